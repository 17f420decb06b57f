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

        public init(raw: Int32) {
            self.raw = raw
        }

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
                    // Once the child has exited, and before it is reaped (so that its id cannot be
                    // anyone else's yet), whatever is left of its process group is killed: a process
                    // it started must not outlive it, nor Bodhi.
                    var info = siginfo_t()
                    while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
                    kill(-pid, SIGKILL)
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

    /// The exit status once the process has exited, if it does within `limit`; nil if it is still
    /// running then. (Polled: the wait for the exit itself cannot be given up.)
    public func exitStatus(within limit: Duration) async -> ExitStatus? {
        let deadline = ContinuousClock.now + limit
        while true {
            if let status = exitStatusIfExited { return status }
            guard ContinuousClock.now < deadline else { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The exit status if the process has already exited; never blocks.
    public var exitStatusIfExited: ExitStatus? {
        exitStatus.value.withLock { $0 }
    }

    /// Signals the child's whole process group (`bodhi_spawn` makes the child its leader), so that
    /// whatever the child started goes too.
    public func signalGroup(_ signal: Int32) {
        kill(-pid, signal)
    }

    /// SIGTERM to the process group, then SIGKILL if the child is still there after `grace`. (What
    /// is left of the group when the child has gone is killed then, whichever way it went.)
    public func terminate(grace: Duration = .seconds(3)) async {
        signalGroup(SIGTERM)
        let killer = Task {
            try await Task.sleep(for: grace)
            if self.exitStatusIfExited == nil { self.signalGroup(SIGKILL) }
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
