import BodhiCore
import BodhiModels
import Foundation

/// Backends in the `backends` table; the API key only ever sealed.
extension Store: BackendRepository {
    struct BackendRow: Codable, Sendable {
        var name: String
        var url: String
        var format: String
        var prefix: String
        var sealed_key: String?
        var created_at: Int64
        var updated_at: Int64

        init(_ backend: BackendConfig) {
            name = backend.name
            url = backend.url
            format = backend.format.rawValue
            prefix = backend.prefix
            sealed_key = backend.sealedKey
            created_at = millis(backend.createdAt)
            updated_at = millis(backend.updatedAt)
        }

        func backend() throws -> BackendConfig {
            guard let format = BackendFormat(rawValue: format) else {
                throw BodhiError.internalError("The backend '\(name)' has an unknown format '\(format)'.")
            }
            return BackendConfig(
                name: name, url: url, format: format, prefix: prefix, sealedKey: sealed_key,
                createdAt: date(created_at), updatedAt: date(updated_at))
        }
    }

    public func allBackends() async throws -> [BackendConfig] {
        try await allNamed("backends", as: BackendRow.self).map { try $0.backend() }
    }

    public func saveBackend(_ backend: BackendConfig) async throws {
        let row = BackendRow(backend)
        try await saveNamed(row, into: "backends", replacing: ["url", "format", "prefix", "sealed_key", "updated_at"])
    }

    public func deleteBackend(named name: String) async throws {
        try await deleteNamed(name, from: "backends")
    }
}
