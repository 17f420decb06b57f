import Foundation
import Logging

/// Logs one line per message to stderr. Unlike swift-log's `StreamLogHandler`, which formats
/// its metadata each time metadata changes (Hummingbird sets a request id on every request),
/// this formats only when a message is actually written.
struct BodhiLogHandler: LogHandler {
    /// `BODHI_LOG_FORMAT`: lines for people, or one JSON object per line for log collectors.
    enum Format: String { case text, json }

    let label: String
    var logLevel: Logger.Level
    var format: Format = .text
    var metadata: Logger.Metadata = [:]
    /// Metadata of the task that logs (the request id of the request being served).
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let timestamp = Date().formatted(.iso8601)
        switch format {
        case .text:
            let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let line = "\(timestamp) \(event.level) \(label): \(fields.isEmpty ? "" : fields + " ")\(event.message)\n"
            FileHandle.standardError.write(Data(line.utf8))
        case .json:
            var object: [String: String] = ["ts": timestamp, "level": "\(event.level)", "logger": label, "message": "\(event.message)"]
            for (key, value) in merged where object[key] == nil { object[key] = "\(value)" }
            var line = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            line.append(0x0A)
            FileHandle.standardError.write(line)
        }
    }
}
