import Foundation

/// What Linux says about memory, processes and disks, read where every part of Bodhi needs it.
public enum SystemResources {
    /// Resident memory of a process (`self` for Bodhi), from `/proc/<pid>/status`.
    public static func residentMemory(of process: String = "self") -> Int64? {
        kilobytes("VmRSS:", in: "/proc/\(process)/status").map { $0 * 1024 }
    }

    /// The memory this process may use in all: the machine's (`MemTotal`), or its control group's
    /// limit (cgroup v2 `memory.max`) when that is lower, as in a container.
    public static func totalMemory() -> Int64? {
        let machine = kilobytes("MemTotal:", in: "/proc/meminfo").map { $0 * 1024 }
        let limit = (try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8))
            .flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard let machine else { return limit }
        return min(machine, limit ?? machine)
    }

    /// Memory the kernel could give without swapping (`MemAvailable`).
    public static func availableMemory() -> Int64? {
        kilobytes("MemAvailable:", in: "/proc/meminfo").map { $0 * 1024 }
    }

    /// Bytes an unprivileged process may still write on the file system holding `path`.
    public static func freeDiskBytes(at path: String) -> Int64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }

    /// The number on a `Key:   123 kB` line of a /proc file.
    private static func kilobytes(_ key: String, in path: String) -> Int64? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int64($0) }
    }
}

extension Duration {
    /// Whole nanoseconds, as Prometheus histograms and Ollama's timings take them.
    public var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
