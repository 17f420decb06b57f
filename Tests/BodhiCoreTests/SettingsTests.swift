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
