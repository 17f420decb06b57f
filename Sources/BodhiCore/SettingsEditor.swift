import Foundation
import Yams

/// One setting as the admin API shows it.
public struct SettingView: Codable, Sendable, Equatable {
    public let key: String
    public let value: String
    public let defaultValue: String
    public let source: String
    public let editable: Bool
    /// When a change takes effect, for editable settings.
    public let takesEffect: String?

    enum CodingKeys: String, CodingKey {
        case key, value, source, editable
        case defaultValue = "default", takesEffect = "takes_effect"
    }
}

/// Reads and changes settings for admins: changes go to `$BODHI_HOME/settings.yaml` (so they
/// survive a restart) after the whole configuration is validated, and `apply` puts them into
/// effect at once.
public actor SettingsEditor {
    /// The settings an admin may change here, and when the change takes effect.
    public static let editable: [SettingKey: String] = [
        .keepAlive: "at once",
        .maxLoadedModels: "at once",
        .memoryBudget: "at once",
        .loadTimeout: "for loads started after the change",
        .shutdownGrace: "after a restart",
        .parallel: "for models loaded after the change",
        .llamaArgs: "for models loaded after the change",
        .maxPulls: "after a restart",
        .maxQueue: "at once",
        .rateLimits: "at once",
        .rateLimitUser: "at once",
        .rateLimitPowerUser: "at once",
        .rateLimitManager: "at once",
        .rateLimitAdmin: "at once",
        .rateLimitAddress: "at once",
        .rateLimitTokens: "at once",
        .rateLimitUnlimited: "at once",
        .corsOrigins: "after a restart",
        .maxOutputTokens: "after a restart",
    ]

    private var settings: Settings
    private let flags: [SettingKey: (flag: String, value: String)]
    private let environment: [String: String]
    private let apply: @Sendable (Settings) async -> Void

    public init(
        settings: Settings, flags: [SettingKey: (flag: String, value: String)] = [:],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        apply: @escaping @Sendable (Settings) async -> Void
    ) {
        self.settings = settings
        self.flags = flags
        self.environment = environment
        self.apply = apply
    }

    public func list() -> [SettingView] {
        SettingKey.allCases.map(view)
    }

    public func set(_ keyText: String, value: String) async throws -> SettingView {
        let key = try editableKey(keyText)
        try await change(key) { $0[key.rawValue] = value }
        return view(key)
    }

    /// Back to the default: the key leaves the settings file.
    public func reset(_ keyText: String) async throws -> SettingView {
        let key = try editableKey(keyText)
        try await change(key) { $0[key.rawValue] = nil }
        return view(key)
    }

    private func view(_ key: SettingKey) -> SettingView {
        var value = settings.texts[key] ?? ""
        var fallback = settings.defaults[key] ?? ""
        if key == .databaseURL {
            value = DatabaseURL.redacted(value)
            fallback = DatabaseURL.redacted(fallback)
        }
        return SettingView(
            key: key.rawValue, value: value, defaultValue: fallback,
            source: "\(settings.sources[key] ?? .defaultValue)", editable: Self.editable[key] != nil,
            takesEffect: Self.editable[key])
    }

    private func editableKey(_ text: String) throws -> SettingKey {
        guard let key = SettingKey(rawValue: text) else {
            throw BodhiError.notFound("There is no setting '\(text)'.")
        }
        guard Self.editable[key] != nil else {
            let keys = Self.editable.keys.map(\.rawValue).sorted().joined(separator: ", ")
            throw BodhiError.invalidRequest("\(key.rawValue) cannot be changed while Bodhi runs; these can: \(keys).", param: "key")
        }
        switch settings.sources[key] {
        case .flag, .environment:
            throw BodhiError.conflict(
                "\(key.rawValue) is set by the \(settings.sources[key]!), which overrides the settings file; change it there.")
        default:
            return key
        }
    }

    /// Edits the settings file, validates the whole configuration with it, and keeps the
    /// change only if it is valid.
    private func change(_ key: SettingKey, _ edit: (inout [String: String]) -> Void) async throws {
        let path = settings.settingsFile
        let previous = FileManager.default.contents(atPath: path)
        var mapping: [String: String] = [:]
        if let previous, let text = String(data: previous, encoding: .utf8),
           let loaded = try? Yams.load(yaml: text) as? [String: Any] {
            for (name, value) in loaded { mapping[name] = "\(value)" }
        }
        edit(&mapping)
        let yaml = try Yams.dump(object: mapping, sortKeys: true)
        try FileManager.default.createDirectory(atPath: settings.home, withIntermediateDirectories: true)
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        do {
            settings = try Settings.resolve(flags: flags, environment: environment)
        } catch {
            if let previous {
                try? previous.write(to: URL(fileURLWithPath: path), options: .atomic)
            } else {
                try? FileManager.default.removeItem(atPath: path)
            }
            throw error
        }
        await apply(settings)
    }
}
