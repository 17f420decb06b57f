import CBodhiSpawn
import Foundation
import Synchronization

/// A child process that cannot outlive Bodhi (see `bodhi_spawn`), with its exit observable
/// from async code.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    private let exit: Task<ExitStatus, Never>
    private let exitStatus: ExitStatusBox

    public struct ExitStatus: Sendable, Equatable, CustomStringConvertible {
        /// The raw status from waitpid.
        public let raw: Int32
        public var signal: Int32? { raw & 0x7f == 0 ? nil : raw & 0x7f }
        public var code: Int32? { raw & 0x7f == 0 ? (raw >> 8) & 0xff : nil }
        public var description: String {
            if let signal { return "killed by signal \(signal)" }
            return "exited with status \(code ?? -1)"
        }
    }

    /// Starts `executable` with `arguments`; its stdout and stderr are appended to `logPath`.
    public init(executable: String, arguments: [String], environment: [String: String], logPath: String) throws {
        let logDescriptor = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard logDescriptor >= 0 else {
            throw ChildProcessError(message: "cannot open log file \(logPath): \(String(cString: strerror(errno)))")
        }
        defer { close(logDescriptor) }

        let argv = ([executable] + arguments).map { strdup($0) }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") }
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var spawnError: Int32 = 0
        let pid = (argv + [nil]).withUnsafeBufferPointer { argvBuffer in
            (envp + [nil]).withUnsafeBufferPointer { envpBuffer in
                bodhi_spawn(executable, argvBuffer.baseAddress, envpBuffer.baseAddress, logDescriptor, &spawnError)
            }
        }
        guard pid > 0 else {
            throw ChildProcessError(message: "cannot start \(executable): \(String(cString: strerror(spawnError)))")
        }
        self.pid = pid
        let exitStatus = ExitStatusBox()
        self.exitStatus = exitStatus
        // waitpid blocks, so it gets a thread of its own rather than one of the cooperative pool's.
        exit = Task {
            await withCheckedContinuation { continuation in
                Thread.detachNewThread {
                    var status: Int32 = 0
                    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                    exitStatus.value.withLock { $0 = ExitStatus(raw: status) }
                    continuation.resume(returning: ExitStatus(raw: status))
                }
            }
        }
    }

    /// Waits until the process has exited (and been reaped).
    public func waitForExit() async -> ExitStatus {
        await exit.value
    }

    /// The exit status if the process has already exited; never blocks.
    public var exitStatusIfExited: ExitStatus? {
        exitStatus.value.withLock { $0 }
    }

    public func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// SIGTERM, then SIGKILL if the process is still there after `grace`.
    public func terminate(grace: Duration = .seconds(3)) async {
        signal(SIGTERM)
        let killer = Task {
            try await Task.sleep(for: grace)
            if self.exitStatusIfExited == nil { self.signal(SIGKILL) }
        }
        _ = await waitForExit()
        killer.cancel()
    }
}

/// Shared between the thread that reaps the child and everyone who asks about it.
private final class ExitStatusBox: Sendable {
    let value = Mutex<ChildProcess.ExitStatus?>(nil)
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
