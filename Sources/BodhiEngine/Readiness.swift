import BodhiCore
import Foundation

/// What `/health/ready` checks: the database, the model store, free disk, the engine binary,
/// memory headroom (required), and each loaded engine (reported, not required: one failing
/// model does not make the others unservable).
public struct Readiness: Sendable {
    let databasePing: @Sendable () async throws -> Void
    let hubDirectory: String
    let engineBinary: String
    let supervisor: EngineSupervisor

    /// Below these, Bodhi is not ready: a pull or a load would fail.
    public static let minimumFreeDisk: Int64 = 256 * 1024 * 1024
    public static let minimumFreeMemory: Int64 = 256 * 1024 * 1024

    public init(
        databasePing: @escaping @Sendable () async throws -> Void, hubDirectory: String, engineBinary: String,
        supervisor: EngineSupervisor
    ) {
        self.databasePing = databasePing
        self.hubDirectory = hubDirectory
        self.engineBinary = engineBinary
        self.supervisor = supervisor
    }

    public struct Component: Codable, Sendable, Equatable {
        public let status: String
        public let detail: String
        public let required: Bool
    }

    public struct Report: Codable, Sendable {
        public let status: String
        public let components: [String: Component]
        public var ready: Bool { status == "ready" }
    }

    public func check() async -> Report {
        var components: [String: Component] = [:]
        func record(_ name: String, _ ok: Bool, _ detail: String, required: Bool = true) {
            components[name] = Component(status: ok ? "ok" : "fail", detail: detail, required: required)
        }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await databasePing() }
                group.addTask {
                    try await Task.sleep(for: .seconds(2))
                    throw BodhiError.internalError("no answer in 2 s")
                }
                try await group.next()
                group.cancelAll()
            }
            record("database", true, "answers")
        } catch {
            record("database", false, "\(error)")
        }
        var isDirectory: ObjCBool = false
        let storeReadable = FileManager.default.fileExists(atPath: hubDirectory, isDirectory: &isDirectory) && isDirectory.boolValue
            && FileManager.default.isReadableFile(atPath: hubDirectory)
        record("model_store", storeReadable, storeReadable ? hubDirectory : "\(hubDirectory) is not a readable directory")
        if let free = SystemResources.freeDiskBytes(at: storeReadable ? hubDirectory : "/") {
            record("disk", free >= Self.minimumFreeDisk, "\(free) bytes free")
        } else {
            record("disk", false, "cannot read free space")
        }
        let runnable = FileManager.default.isExecutableFile(atPath: engineBinary)
        record("engine_binary", runnable, runnable ? engineBinary : "\(engineBinary) is not executable")
        if let available = SystemResources.availableMemory() {
            record("memory", available >= Self.minimumFreeMemory, "\(available) bytes available")
        } else {
            record("memory", true, "unknown")
        }
        for engine in await supervisor.probe() {
            record("engine:\(engine.engine)", engine.healthy, engine.detail, required: false)
        }
        let ready = components.values.allSatisfy { !$0.required || $0.status == "ok" }
        return Report(status: ready ? "ready" : "not_ready", components: components)
    }
}
