import Foundation
import Yams

/// Every setting Bodhi reads, named as its environment variable (the same names are the keys
/// of `$BODHI_HOME/settings.yaml`).
public enum SettingKey: String, CaseIterable, Sendable {
    case home = "BODHI_HOME"
    case hfHome = "HF_HOME"
    case host = "BODHI_HOST"
    case port = "BODHI_PORT"
    case llamaServer = "BODHI_LLAMA_SERVER"
    case llamaArgs = "BODHI_LLAMA_ARGS"
    case keepAlive = "BODHI_KEEP_ALIVE"
    case maxLoadedModels = "BODHI_MAX_LOADED_MODELS"
    case parallel = "BODHI_PARALLEL"
    case hfEndpoint = "HF_ENDPOINT"
    case maxPulls = "BODHI_MAX_PULLS"
    case databaseURL = "BODHI_DATABASE_URL"
    case ollamaPort = "BODHI_OLLAMA_PORT"
    case maxQueue = "BODHI_MAX_QUEUE"
    case rateLimits = "BODHI_RATE_LIMITS"
    case rateLimitUser = "BODHI_RATE_LIMIT_USER"
    case rateLimitPowerUser = "BODHI_RATE_LIMIT_POWER_USER"
    case rateLimitManager = "BODHI_RATE_LIMIT_MANAGER"
    case rateLimitAdmin = "BODHI_RATE_LIMIT_ADMIN"
    case rateLimitAddress = "BODHI_RATE_LIMIT_IP"
    case rateLimitTokens = "BODHI_RATE_LIMIT_TOKENS"
    case rateLimitUnlimited = "BODHI_RATE_LIMIT_UNLIMITED"
    case loadTimeout = "BODHI_LOAD_TIMEOUT"
    case memoryBudget = "BODHI_MEMORY_BUDGET"
    case shutdownGrace = "BODHI_SHUTDOWN_GRACE"
    case corsOrigins = "BODHI_CORS_ORIGINS"
    case maxOutputTokens = "BODHI_MAX_OUTPUT_TOKENS"
}

/// Where a setting's value came from, in order of precedence.
public enum SettingSource: Sendable, Equatable, CustomStringConvertible {
    case flag(String)
    case environment
    case file(String)
    case defaultValue

    public var description: String {
        switch self {
        case .flag(let name): return "command-line flag \(name)"
        case .environment: return "environment"
        case .file(let path): return "settings file \(path)"
        case .defaultValue: return "default"
        }
    }
}

/// The resolved configuration of one Bodhi process.
public struct Settings: Sendable {
    /// The llama.cpp release that `scripts/bootstrap` builds, with Bodhi's patches (`scripts/llama.cpp-patches`);
    /// the default engine lives under it.
    public static let engineVersion = "11434.0.0-bodhi1"
    /// The Swagger UI release whose assets `scripts/bootstrap` lays out for `/docs`.
    public static let swaggerUIVersion = "5.31.0"

    public var home: String
    public var hfHome: String
    public var host: String
    public var port: Int
    public var llamaServer: String
    public var llamaArgs: [String]
    public var keepAlive: KeepAlive
    public var maxLoadedModels: Int
    public var parallel: Int
    /// How long a model may take to become ready before its load counts as failed.
    public var loadTimeout: Duration
    /// How much memory the loaded models may take together (their estimates).
    public var memoryBudget: MemoryBudget
    /// How long a stop lets requests in flight finish; streams still running then end with an
    /// error event in their API's format.
    public var shutdownGrace: Duration
    /// The Hugging Face Hub, as `huggingface_hub` reads it from `HF_ENDPOINT`.
    public var hfEndpoint: String
    /// `HF_TOKEN`, else the token file `huggingface_hub` writes at login (`HF_TOKEN_PATH`,
    /// default `$HF_HOME/token`). Deliberately not a settings-file key.
    public var hfToken: String?
    /// Pulls that download at once; more wait their turn.
    public var maxPulls: Int
    /// Where Bodhi keeps its data: SQLite in `BODHI_HOME` by default, or PostgreSQL.
    public var database: DatabaseURL
    /// A second listener for tools that expect Ollama's address (e.g. 11434); nil for none.
    public var ollamaPort: Int?
    /// Requests that may wait for a slot of one model; more are refused with 503.
    public var maxQueue: Int
    public var rateLimits: RateLimitSettings
    /// Browser origins that may call the inference APIs from their own pages.
    public var corsOrigins: CORSOrigins
    /// The most one request may generate; nil for up to a slot's context (`context`).
    public var maxOutputTokens: Int?
    /// Swagger UI's assets for `/docs`, from the bootstrap's cache.
    public var docsAssetsDirectory: String
    public var sources: [SettingKey: SettingSource]
    /// Each setting as written where it came from, and its default, for the settings API.
    public var texts: [SettingKey: String]
    public var defaults: [SettingKey: String]

    public var hubDirectory: String { hfHome + "/hub" }
    public var logsDirectory: String { home + "/logs" }
    public var settingsFile: String { home + "/settings.yaml" }

    /// Engine flags that Bodhi owns: letting extra arguments set them would break isolation
    /// (host, port, key) or Bodhi's bookkeeping (model, alias, slots).
    public static let reservedEngineFlags: Set<String> = [
        "--host", "--port", "--api-key", "--api-key-file", "-m", "--model", "-a", "--alias",
        "-np", "--parallel", "--path",
    ]

    /// Resolves settings with precedence flag > environment > settings file > default.
    /// Invalid values fail with a message naming the setting and where it came from.
    public static func resolve(
        flags: [SettingKey: (flag: String, value: String)] = [:],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> Settings {
        let userHome = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        var resolver = Resolver(flags: flags, environment: environment, file: [:], filePath: "")

        let (homeValue, homeSource) = resolver.raw(.home) ?? (userHome + "/.bodhi", .defaultValue)
        let home = expandTilde(homeValue, userHome: userHome)
        resolver.filePath = home + "/settings.yaml"
        resolver.file = try loadFile(at: resolver.filePath)

        var sources: [SettingKey: SettingSource] = [.home: homeSource]
        var texts: [SettingKey: String] = [.home: home]
        var defaults: [SettingKey: String] = [.home: userHome + "/.bodhi"]
        func value(_ key: SettingKey, default fallback: String) -> String {
            let (text, source) = resolver.raw(key) ?? (fallback, .defaultValue)
            sources[key] = source
            texts[key] = text
            defaults[key] = fallback
            return text
        }
        func invalid(_ key: SettingKey, _ text: String, _ expectation: String) -> BodhiError {
            BodhiError(.invalidSetting, status: 400,
                       "Invalid value '\(text)' for \(key.rawValue) (from \(sources[key] ?? .defaultValue)): \(expectation).")
        }
        func integer(_ key: SettingKey, default fallback: Int, range: ClosedRange<Int>) throws -> Int {
            let text = value(key, default: String(fallback))
            guard let number = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(number) else {
                throw invalid(key, text, "expected a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return number
        }

        let cache = environment["BODHI_CACHE"].flatMap { $0.isEmpty ? nil : $0 } ?? userHome + "/.cache/bodhi"
        let hfHome = expandTilde(value(.hfHome, default: userHome + "/.cache/huggingface"), userHome: userHome)
        let host = value(.host, default: "127.0.0.1").trimmingCharacters(in: .whitespaces)
        if host.isEmpty || host.contains(where: { $0 == " " || $0 == "/" }) {
            throw invalid(.host, host, "expected an IP address or host name such as 127.0.0.1 or 0.0.0.0")
        }
        let port = try integer(.port, default: 1135, range: 1...65535)
        let llamaServer = expandTilde(
            value(.llamaServer, default: cache + "/llama.cpp/\(engineVersion)/bin/llama-server"), userHome: userHome)
        let argsText = value(.llamaArgs, default: "")
        guard let llamaArgs = splitShellWords(argsText) else {
            throw invalid(.llamaArgs, argsText, "unbalanced quotes")
        }
        if let reserved = llamaArgs.first(where: { reservedEngineFlags.contains($0.split(separator: "=").first.map(String.init) ?? $0) }) {
            throw invalid(.llamaArgs, argsText, "\(reserved) is set by Bodhi itself and cannot be passed to the engine")
        }
        let keepAliveText = value(.keepAlive, default: "5m")
        guard let keepAlive = KeepAlive(parsing: keepAliveText) else {
            throw invalid(.keepAlive, keepAliveText, "expected a duration such as 30s, 5m or 1h, 0 to unload at once, or a negative value to keep models loaded")
        }
        func duration(_ key: SettingKey, default fallback: String, range: ClosedRange<Duration>) throws -> Duration {
            let text = value(key, default: fallback)
            guard case .some(.idle(let duration)) = KeepAlive(parsing: text), range.contains(duration) else {
                throw invalid(key, text, "expected a duration such as 30s, 5m or 1h, from \(KeepAlive.idle(range.lowerBound)) to \(KeepAlive.idle(range.upperBound))")
            }
            return duration
        }
        let loadTimeout = try duration(.loadTimeout, default: "5m", range: .seconds(1) ... .seconds(24 * 3600))
        let shutdownGrace = try duration(.shutdownGrace, default: "5s", range: .zero ... .seconds(3600))
        let budgetText = value(.memoryBudget, default: "80%")
        guard let memoryBudget = MemoryBudget(parsing: budgetText, totalMemory: SystemResources.totalMemory()) else {
            throw invalid(.memoryBudget, budgetText, "expected a size such as 16GB or 12GiB, a share of this machine's memory such as 80%, or off")
        }
        let maxLoaded = try integer(.maxLoadedModels, default: 3, range: 1...64)
        let parallel = try integer(.parallel, default: 4, range: 1...256)
        var hfEndpoint = value(.hfEndpoint, default: "https://huggingface.co").trimmingCharacters(in: .whitespaces)
        while hfEndpoint.hasSuffix("/") { hfEndpoint.removeLast() }
        guard let endpointURL = URL(string: hfEndpoint), ["http", "https"].contains(endpointURL.scheme ?? ""),
              endpointURL.host?.isEmpty == false else {
            throw invalid(.hfEndpoint, hfEndpoint, "expected an http(s) URL such as https://huggingface.co")
        }
        let maxPulls = try integer(.maxPulls, default: 2, range: 1...16)
        let ollamaPortText = value(.ollamaPort, default: "").trimmingCharacters(in: .whitespaces)
        var ollamaPort: Int?
        if !ollamaPortText.isEmpty {
            guard let number = Int(ollamaPortText), (1...65535).contains(number), number != port else {
                throw invalid(.ollamaPort, ollamaPortText, "expected a port from 1 to 65535 other than BODHI_PORT, or nothing for no second listener")
            }
            ollamaPort = number
        }
        let databaseText = value(.databaseURL, default: "sqlite:" + home + "/bodhi.sqlite")
        guard let database = DatabaseURL(databaseText, relativeTo: home) else {
            throw invalid(.databaseURL, DatabaseURL.redacted(databaseText),
                          "expected sqlite:PATH or postgres://user:password@host:port/database")
        }

        let maxQueue = try integer(.maxQueue, default: 512, range: 0...1_000_000)
        let rateLimits = try resolveRateLimits(value: value, invalid: invalid)
        let outputText = value(.maxOutputTokens, default: "context").trimmingCharacters(in: .whitespaces)
        var maxOutputTokens: Int?
        if outputText != "context" {
            guard let number = Int(outputText), (1...10_000_000).contains(number) else {
                throw invalid(.maxOutputTokens, outputText, "expected a number of tokens from 1 to 10000000, or context (a slot's context)")
            }
            maxOutputTokens = number
        }
        let corsText = value(.corsOrigins, default: CORSOrigins.defaultText)
        guard let corsOrigins = CORSOrigins(parsing: corsText) else {
            throw invalid(.corsOrigins, corsText, "expected origins such as http://localhost:3000 or chrome-extension://*, separated by commas, or * for any")
        }

        return Settings(
            home: home, hfHome: hfHome, host: host, port: port, llamaServer: llamaServer,
            llamaArgs: llamaArgs, keepAlive: keepAlive, maxLoadedModels: maxLoaded, parallel: parallel,
            loadTimeout: loadTimeout, memoryBudget: memoryBudget, shutdownGrace: shutdownGrace,
            hfEndpoint: hfEndpoint, hfToken: hubToken(environment: environment, hfHome: hfHome), maxPulls: maxPulls,
            database: database, ollamaPort: ollamaPort, maxQueue: maxQueue, rateLimits: rateLimits, corsOrigins: corsOrigins, maxOutputTokens: maxOutputTokens,
            docsAssetsDirectory: cache + "/swagger-ui/\(swaggerUIVersion)",
            sources: sources, texts: texts, defaults: defaults)
    }

    private static func resolveRateLimits(
        value: (SettingKey, String) -> String, invalid: (SettingKey, String, String) -> BodhiError
    ) throws -> RateLimitSettings {
        let switchText = value(.rateLimits, "on").trimmingCharacters(in: .whitespaces).lowercased()
        guard ["on", "off", "true", "false"].contains(switchText) else {
            throw invalid(.rateLimits, switchText, "expected on or off")
        }
        let planExpectation = "expected items such as inference=600/m management=1200/m auth=60/m all=6000/m tokens=1000000/m (per s, m or h), or unlimited"
        var roles: [String: RateLimitPlan] = [:]
        let roleKeys: [(String, SettingKey)] = [
            ("user", .rateLimitUser), ("power_user", .rateLimitPowerUser), ("manager", .rateLimitManager), ("admin", .rateLimitAdmin),
        ]
        for (role, key) in roleKeys {
            let text = value(key, RateLimitSettings.defaultRoles[role]!)
            guard let plan = RateLimitPlan(parsing: text) else { throw invalid(key, text, planExpectation) }
            roles[role] = plan
        }
        let addressText = value(.rateLimitAddress, RateLimitSettings.defaultAddress)
        guard let address = RateLimitPlan(parsing: addressText) else { throw invalid(.rateLimitAddress, addressText, planExpectation) }
        let tokensText = value(.rateLimitTokens, "")
        guard let tokens = RateLimitSettings.parseTokenPlans(tokensText) else {
            throw invalid(.rateLimitTokens, tokensText, "expected TOKEN_ID=PLAN entries separated by ';', each PLAN as in BODHI_RATE_LIMIT_USER")
        }
        return RateLimitSettings(
            enabled: switchText == "on" || switchText == "true", roles: roles, address: address, tokens: tokens,
            unlimited: RateLimitSettings.parseNames(value(.rateLimitUnlimited, "")))
    }

    /// The token `huggingface_hub` would send: `HF_TOKEN`, else the saved token file.
    private static func hubToken(environment: [String: String], hfHome: String) -> String? {
        if let token = environment["HF_TOKEN"]?.trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty {
            return token
        }
        let path = environment["HF_TOKEN_PATH"].flatMap { $0.isEmpty ? nil : $0 } ?? hfHome + "/token"
        let saved = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return saved?.isEmpty == false ? saved : nil
    }

    /// Checks what can only be checked on the machine itself, at `serve` time.
    public func validateEngine() throws {
        guard FileManager.default.isExecutableFile(atPath: llamaServer) else {
            let hint = sources[.llamaServer] == .defaultValue
                ? "run scripts/bootstrap (or `make run`) to build it, or point BODHI_LLAMA_SERVER at your own llama-server"
                : "point BODHI_LLAMA_SERVER at an executable llama-server"
            throw BodhiError(.invalidSetting, status: 400,
                             "BODHI_LLAMA_SERVER (from \(sources[.llamaServer] ?? .defaultValue)) is '\(llamaServer)', which is not an executable file: \(hint).")
        }
    }

    private struct Resolver {
        var flags: [SettingKey: (flag: String, value: String)]
        var environment: [String: String]
        var file: [String: String]
        var filePath: String

        func raw(_ key: SettingKey) -> (String, SettingSource)? {
            if let flag = flags[key] { return (flag.value, .flag(flag.flag)) }
            if let value = environment[key.rawValue], !value.isEmpty { return (value, .environment) }
            if let value = file[key.rawValue] { return (value, .file(filePath)) }
            return nil
        }
    }

    private static func loadFile(at path: String) throws -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        func failure(_ reason: String) -> BodhiError {
            BodhiError(.invalidSetting, status: 400, "Cannot read settings file \(path): \(reason).")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw failure("it is not UTF-8 text") }
        let parsed: Any?
        do { parsed = try Yams.load(yaml: text) } catch { throw failure("\(error)") }
        guard let parsed else { return [:] }
        guard let mapping = parsed as? [String: Any] else { throw failure("expected a mapping of SETTING: value") }
        var values: [String: String] = [:]
        for (key, value) in mapping {
            guard SettingKey(rawValue: key) != nil, key != SettingKey.home.rawValue else {
                let known = SettingKey.allCases.filter { $0 != .home }.map(\.rawValue).joined(separator: ", ")
                throw failure("unknown setting '\(key)' (known: \(known))")
            }
            switch value {
            case let text as String: values[key] = text
            case let number as Int: values[key] = String(number)
            case let number as Double: values[key] = String(number)
            case let flag as Bool: values[key] = String(flag)
            default: throw failure("the value of \(key) must be a single value")
            }
        }
        return values
    }

    private static func expandTilde(_ path: String, userHome: String) -> String {
        if path == "~" { return userHome }
        if path.hasPrefix("~/") { return userHome + path.dropFirst() }
        return path
    }
}

/// Splits a command line into words the way a POSIX shell would for quotes and backslashes
/// (no expansion). Returns nil for unbalanced quotes.
public func splitShellWords(_ text: String) -> [String]? {
    var words: [String] = []
    var current = ""
    var inWord = false
    var quote: Character?
    var escaped = false
    for character in text {
        if escaped {
            current.append(character)
            escaped = false
            continue
        }
        if let open = quote {
            if character == open {
                quote = nil
            } else if character == "\\" && open == "\"" {
                escaped = true
            } else {
                current.append(character)
            }
            continue
        }
        switch character {
        case "\\":
            escaped = true
            inWord = true
        case "\"", "'":
            quote = character
            inWord = true
        case " ", "\t", "\n":
            if inWord { words.append(current) }
            current = ""
            inWord = false
        default:
            current.append(character)
            inWord = true
        }
    }
    if quote != nil || escaped { return nil }
    if inWord { words.append(current) }
    return words
}
