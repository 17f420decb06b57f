import Foundation
import Logging

/// Logs one line per message to stderr. Unlike swift-log's `StreamLogHandler`, which formats
/// its metadata each time metadata changes (Hummingbird sets a request id on every request),
/// this formats only when a message is actually written.
struct BodhiLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let timestamp = Date().formatted(.iso8601)
        let line = "\(timestamp) \(event.level) \(label): \(fields.isEmpty ? "" : fields + " ")\(event.message)\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
