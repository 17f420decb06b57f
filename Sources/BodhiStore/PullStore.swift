import BodhiModels
import Foundation
import SQLKit

/// Pulls in the `pulls` table; the file list is JSON in one column.
extension Store: PullRepository {
    struct PullRow: Codable, Sendable {
        var id: String
        var reference: String
        var repo: String
        var revision: String
        var commit_sha: String
        var model: String
        var files: String
        var state: String
        var error: String?
        var total_bytes: Int64
        var completed_bytes: Int64
        var created_at: Int64
        var updated_at: Int64

        init(_ pull: PullRecord) throws {
            id = pull.id
            reference = pull.reference
            repo = pull.repo
            revision = pull.revision
            commit_sha = pull.commit
            model = pull.model
            files = try jsonColumn(pull.files)
            state = pull.state.rawValue
            error = pull.error
            total_bytes = pull.totalBytes
            completed_bytes = pull.completedBytes
            created_at = millis(pull.createdAt)
            updated_at = millis(pull.updatedAt)
        }

        func record() throws -> PullRecord {
            PullRecord(
                id: id, reference: reference, repo: repo, revision: revision, commit: commit_sha, model: model,
                files: try fromJSONColumn(files, as: [PullFile].self),
                state: PullState(rawValue: state) ?? .failed, error: error, completedBytes: completed_bytes,
                createdAt: date(created_at), updatedAt: date(updated_at))
        }
    }

    public func save(_ pull: PullRecord) async throws {
        let row = try PullRow(pull)
        try await session { database in
            try await database.insert(into: "pulls").model(row, nilEncodingStrategy: .asNil)
                .onConflict(with: "id") { update in
                    update.set(excludedValueOf: "state").set(excludedValueOf: "error")
                        .set(excludedValueOf: "completed_bytes").set(excludedValueOf: "updated_at")
                }
                .run()
        }
    }

    public func pull(id: String) async throws -> PullRecord? {
        try await session { database in
            try await database.select().column("*").from("pulls").where("id", .equal, id)
                .first(decoding: PullRow.self)
        }?.record()
    }

    public func pulls(limit: Int) async throws -> [PullRecord] {
        try await session { database in
            try await database.select().column("*").from("pulls")
                .orderBy("created_at", .descending).limit(limit)
                .all(decoding: PullRow.self)
        }.map { try $0.record() }
    }

    public func unfinishedPulls() async throws -> [PullRecord] {
        try await session { database in
            try await database.select().column("*").from("pulls")
                .where("state", .in, [PullState.queued.rawValue, PullState.downloading.rawValue])
                .orderBy("created_at")
                .all(decoding: PullRow.self)
        }.map { try $0.record() }
    }
}
