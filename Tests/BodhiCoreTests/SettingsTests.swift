import BodhiCore
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct SettingsTests {
    let home = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-settings-\(UUID().uuidString)").path

    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        ["HOME": "/home/someone", "BODHI_HOME": home].merging(extra) { _, new in new }
    }

    func writeSettingsFile(_ text: String) throws {
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try text.write(toFile: home + "/settings.yaml", atomically: true, encoding: .utf8)
    }

    @Test func defaultsApplyWhenNothingIsSet() throws {
        let settings = try Settings.resolve(environment: ["HOME": "/home/someone"])
        #expect(settings.home == "/home/someone/.bodhi")
        #expect(settings.hfHome == "/home/someone/.cache/huggingface")
        #expect(settings.host == "127.0.0.1")
        #expect(settings.port == 1135)
        #expect(settings.llamaServer == "/home/someone/.cache/bodhi/llama.cpp/\(Settings.engineVersion)/bin/llama-server")
        #expect(settings.keepAlive == .idle(.seconds(300)))
        #expect(settings.maxLoadedModels == 3)
        #expect(settings.parallel == 4)
        #expect(settings.llamaArgs.isEmpty)
        #expect(settings.sources[.port] == .defaultValue)
    }

    @Test func flagBeatsEnvironmentBeatsFileBeatsDefault() throws {
        try writeSettingsFile("BODHI_PORT: 2000\nBODHI_PARALLEL: 2\nBODHI_KEEP_ALIVE: 10m\n")
        let fromFile = try Settings.resolve(environment: environment())
        #expect(fromFile.port == 2000)
        #expect(fromFile.parallel == 2)
        #expect(fromFile.keepAlive == .idle(.seconds(600)))
        #expect(fromFile.sources[.port] == .file(home + "/settings.yaml"))

        let fromEnvironment = try Settings.resolve(environment: environment(["BODHI_PORT": "3000"]))
        #expect(fromEnvironment.port == 3000)
        #expect(fromEnvironment.sources[.port] == .environment)
        #expect(fromEnvironment.parallel == 2)

        let fromFlag = try Settings.resolve(flags: [.port: ("--port", "4000")], environment: environment(["BODHI_PORT": "3000"]))
        #expect(fromFlag.port == 4000)
        #expect(fromFlag.sources[.port] == .flag("--port"))
    }

    @Test func engineLimitsHaveDefaultsAndRefuseNonsense() throws {
        let defaults = try Settings.resolve(environment: environment())
        #expect(defaults.loadTimeout == .seconds(300))
        #expect(defaults.shutdownGrace == .seconds(5))
        #expect(defaults.memoryBudget.limit != nil)
        let set = try Settings.resolve(environment: environment([
            "BODHI_LOAD_TIMEOUT": "90s", "BODHI_SHUTDOWN_GRACE": "0", "BODHI_MEMORY_BUDGET": "12GiB"]))
        #expect(set.loadTimeout == .seconds(90) && set.shutdownGrace == .zero && set.memoryBudget == .bytes(12 << 30))
        for (key, value) in [("BODHI_LOAD_TIMEOUT", "0"), ("BODHI_LOAD_TIMEOUT", "-1"), ("BODHI_SHUTDOWN_GRACE", "soon"),
                             ("BODHI_MEMORY_BUDGET", "lots"), ("BODHI_MEMORY_BUDGET", "120%")] {
            let error = #expect(throws: BodhiError.self) { try Settings.resolve(environment: environment([key: value])) }
            #expect(error?.message.contains(key) == true)
        }
    }

    @Test func memoryBudgetsAreSizesSharesOrOff() {
        #expect(MemoryBudget(parsing: "off", totalMemory: 1000) == .off)
        #expect(MemoryBudget(parsing: "80%", totalMemory: 1000) == .bytes(800))
        #expect(MemoryBudget(parsing: "16GB", totalMemory: nil) == .bytes(16_000_000_000))
        #expect(MemoryBudget(parsing: "12 GiB", totalMemory: nil) == .bytes(12 << 30))
        #expect(MemoryBudget(parsing: "512mb", totalMemory: nil) == .bytes(512_000_000))
        for nonsense in ["", "lots", "0", "0%", "150%", "-5GB", "5XB", "80%%"] {
            #expect(MemoryBudget(parsing: nonsense, totalMemory: 1000) == nil, "\(nonsense)")
        }
        #expect(ByteSize.format(1_600_000_000) == "1.6 GB" && ByteSize.format(999) == "999 B")
    }

    @Test func invalidValuesNameTheSettingAndItsSource() throws {
        let error = #expect(throws: BodhiError.self) {
            try Settings.resolve(environment: environment(["BODHI_PORT": "70000"]))
        }
        #expect(error?.message.contains("BODHI_PORT") == true)
        #expect(error?.message.contains("environment") == true)

        try writeSettingsFile("BODHI_KEEP_ALIVE: soon\n")
        let fileError = #expect(throws: BodhiError.self) { try Settings.resolve(environment: environment()) }
        #expect(fileError?.message.contains("BODHI_KEEP_ALIVE") == true)
        #expect(fileError?.message.contains("settings.yaml") == true)

        let flagError = #expect(throws: BodhiError.self) {
            try Settings.resolve(flags: [.port: ("--port", "abc")], environment: environment())
        }
        #expect(flagError?.message.contains("--port") == true)
    }

    @Test func unknownKeysInTheFileAreRejected() throws {
        try writeSettingsFile("BODHI_PROT: 1\n")
        let error = #expect(throws: BodhiError.self) { try Settings.resolve(environment: environment()) }
        #expect(error?.message.contains("BODHI_PROT") == true)
    }

    @Test func engineArgumentsAreSplitLikeAShellAndReservedFlagsRefused() throws {
        let settings = try Settings.resolve(environment: environment(["BODHI_LLAMA_ARGS": "--ctx-size 4096 --chat-template-kwargs '{\"a\": 1}'"]))
        #expect(settings.llamaArgs == ["--ctx-size", "4096", "--chat-template-kwargs", "{\"a\": 1}"])
        for reserved in ["--port 9", "--host=0.0.0.0", "--api-key x", "-m other.gguf"] {
            let error = #expect(throws: BodhiError.self) {
                try Settings.resolve(environment: environment(["BODHI_LLAMA_ARGS": reserved]))
            }
            #expect(error?.message.contains("BODHI_LLAMA_ARGS") == true)
        }
        #expect(throws: BodhiError.self) { try Settings.resolve(environment: environment(["BODHI_LLAMA_ARGS": "'open"])) }
    }

    @Test func missingEngineBinaryExplainsHowToGetOne() throws {
        let settings = try Settings.resolve(environment: environment(["BODHI_LLAMA_SERVER": "/nonexistent/llama-server"]))
        let error = #expect(throws: BodhiError.self) { try settings.validateEngine() }
        #expect(error?.message.contains("BODHI_LLAMA_SERVER") == true)
        #expect(error?.message.contains("/nonexistent/llama-server") == true)
    }
}

@Suite(.timeLimit(.minutes(2))) struct KeepAliveTests {
    @Test(arguments: [
        ("5m", KeepAlive.idle(.seconds(300))), ("30s", .idle(.seconds(30))), ("1h30m", .idle(.seconds(5400))),
        ("250ms", .idle(.milliseconds(250))), ("0", .idle(.zero)), ("90", .idle(.seconds(90))),
        ("-1", .forever), ("-5m", .forever),
    ])
    func parsesOllamaStyleDurations(text: String, expected: KeepAlive) {
        #expect(KeepAlive(parsing: text) == expected)
    }

    @Test(arguments: ["", "soon", "5x", "m", "-", "1.5.2s"])
    func rejectsNonsense(text: String) {
        #expect(KeepAlive(parsing: text) == nil)
    }
}

@Suite struct CORSOriginsTests {
    @Test func theDefaultAllowsThisMachinesPagesAndAppsButNoOtherSite() throws {
        let origins = try #require(CORSOrigins(parsing: CORSOrigins.defaultText))
        for origin in ["http://localhost:3000", "http://LOCALHOST:8080", "https://127.0.0.1", "http://[::1]:5173", "tauri://localhost", "app://x"] {
            #expect(origins.allows(origin), "\(origin)")
        }
        for origin in ["https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.nip.io", "null", "chrome-extension://abc"] {
            #expect(!origins.allows(origin), "\(origin)")
        }
    }

    @Test func patternsAreListedWithStarsAndStarAloneIsAnyOrigin() throws {
        let origins = try #require(CORSOrigins(parsing: "https://app.example.com, chrome-extension://*"))
        #expect(origins.allows("https://app.example.com") && origins.allows("chrome-extension://abcdef"))
        #expect(!origins.allows("https://app.example.com.evil") && !origins.allows("http://app.example.com"))
        #expect(try #require(CORSOrigins(parsing: "*")).allows("https://anything.example"))
        #expect(CORSOrigins(parsing: "localhost:3000") == nil && CORSOrigins(parsing: "http://x/") == nil)
    }
}
