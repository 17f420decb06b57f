import BodhiCore
import BodhiEngine
import BodhiHub
import Foundation
import Hummingbird
import Prometheus
import Synchronization

/// Bodhi's Prometheus metrics: its own (HTTP, inference, engines, process) from one registry,
/// and each engine's llama.cpp metrics re-exposed with a `model` label.
public final class BodhiMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    static let durationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]

    static let tokenLatencyBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
    ]
    static let tokenRateBuckets: [Double] = [1, 5, 10, 25, 50, 100, 200, 400, 800, 1600]

    /// What the last scrape reported of values that are kept elsewhere as totals or per model.
    private struct Scraped {
        var pullBytes: Int64 = 0
        var queueModels: Set<String> = []
    }
    private let scraped = Mutex(Scraped())
    private let handles = Mutex<[HandleKey: Handle]>([:])

    public init() {}

    /// One refused by a rate limit.
    func recordRateLimited(routeClass: RouteClass, policy: String) {
        makeCounter(
            name: "bodhi_rate_limited_total", labels: [("class", routeClass.rawValue), ("policy", policy)],
            help: "Requests refused with 429 by a rate limit.").increment()
    }

    /// One finished HTTP request, by the route pattern (not the raw path, which would make
    /// unbounded label values).
    func recordRequest(method: String, route: String, status: Int, duration: Duration) {
        let labels = [("method", method), ("route", route), ("status", String(status))]
        makeCounter(name: "bodhi_http_requests_total", labels: labels, help: "HTTP requests served.").increment()
        makeDurationHistogram(
            name: "bodhi_http_request_duration_seconds", labels: [("method", method), ("route", route)],
            buckets: Self.durationBuckets, help: "Time to the response head (streams continue after it)."
        ).recordNanoseconds(duration.nanoseconds)
    }

    /// The exposition: Bodhi's metrics, the engines' state and the process's, then each engine's own.
    func exposition(supervisor: EngineSupervisor, admission: AdmissionQueue, pulls: PullManager) async -> String {
        let depths = admission.depths()
        let pullBytes = await pulls.downloadedBytes
        let (newPullBytes, vanished) = scraped.withLock { scraped in
            // Scrapes can overlap; only ever count upwards (a counter must never be given less than 0).
            let delta = max(0, pullBytes - scraped.pullBytes)
            scraped.pullBytes = max(scraped.pullBytes, pullBytes)
            let current = Set(depths.map(\.model))
            let vanished = scraped.queueModels.subtracting(current)
            scraped.queueModels = current
            return (delta, vanished)
        }
        makeCounter(name: "bodhi_pull_bytes_total", help: "Bytes downloaded by pulls.").increment(by: newPullBytes)
        for depth in depths {
            makeGauge(name: "bodhi_queue_depth", labels: [("model", depth.model)],
                               help: "Requests waiting for a slot of the model.").set(Double(depth.waiting))
            makeGauge(name: "bodhi_queue_in_flight", labels: [("model", depth.model)],
                               help: "Requests holding a slot of the model.").set(Double(depth.inFlight))
        }
        for model in vanished {
            makeGauge(name: "bodhi_queue_depth", labels: [("model", model)], help: "Requests waiting for a slot of the model.").set(0.0)
            makeGauge(name: "bodhi_queue_in_flight", labels: [("model", model)], help: "Requests holding a slot of the model.").set(0.0)
        }
        let engines = await supervisor.status()
        makeGauge(name: "bodhi_loaded_models", help: "Engines loaded or loading.").set(Double(engines.count))
        for engine in engines {
            makeGauge(name: "bodhi_engine_restarts", labels: [("model", engine.model)],
                               help: "Restarts of the model's engine after it died.").set(Double(engine.restarts))
            makeGauge(name: "bodhi_engine_in_flight_requests", labels: [("model", engine.model)],
                               help: "Requests the engine is serving.").set(Double(engine.inFlight))
            if let loadSeconds = engine.loadSeconds {
                makeGauge(name: "bodhi_engine_load_duration_seconds", labels: [("model", engine.model)],
                                   help: "How long the engine's last load took, from start to healthy.").set(loadSeconds)
            }
            if let memory = engine.memoryBytes {
                makeGauge(name: "bodhi_engine_resident_memory_bytes", labels: [("model", engine.model)],
                                   help: "Resident memory of the engine process.").set(Double(memory))
            }
        }
        let process = ProcessStatistics.read()
        makeGauge(name: "process_resident_memory_bytes", help: "Resident memory of Bodhi.").set(Double(process.residentBytes))
        makeGauge(name: "process_cpu_seconds", help: "CPU time Bodhi used (user and system).").set(process.cpuSeconds)
        makeGauge(name: "process_open_fds", help: "Open file descriptors.").set(Double(process.openDescriptors))
        var text = registry.emitToString()
        text += EngineMetrics.relabel(await supervisor.engineMetrics())
        return text
    }
}

extension BodhiMetrics: InferenceObserver {
    public func inferenceFinished(_ record: InferenceRecord) {
        let model = ("model", record.model)
        let backend = ("backend", record.backend)
        let operation = ("operation", record.operation.name)
        makeCounter(
            name: "bodhi_inference_requests_total", labels: [model, backend, operation, ("status", String(record.status))],
            help: "Inference requests answered, by what served them (`local`, or a backend's name).").increment()
        makeDurationHistogram(
            name: "bodhi_queue_wait_seconds", labels: [model], buckets: Self.durationBuckets,
            help: "Time inference requests waited for a slot.").recordNanoseconds(record.queueWait.nanoseconds)
        if let prompt = record.promptTokens {
            makeCounter(name: "bodhi_prompt_tokens_total", labels: [model, backend], help: "Prompt tokens processed.")
                .increment(by: Int64(prompt))
        }
        if let completion = record.completionTokens {
            makeCounter(name: "bodhi_completion_tokens_total", labels: [model, backend], help: "Tokens generated.")
                .increment(by: Int64(completion))
        }
        if let firstToken = record.timeToFirstToken {
            makeDurationHistogram(
                name: "bodhi_time_to_first_token_seconds", labels: [model], buckets: Self.durationBuckets,
                help: "From a streamed request's arrival to its first generated event.").recordNanoseconds(firstToken.nanoseconds)
        }
        if !record.interTokenLatencies.isEmpty {
            let histogram = makeDurationHistogram(
                name: "bodhi_inter_token_latency_seconds", labels: [model], buckets: Self.tokenLatencyBuckets,
                help: "Time between consecutive generated events of a stream.")
            for gap in record.interTokenLatencies { histogram.recordNanoseconds(gap.nanoseconds) }
            let generating = record.interTokenLatencies.reduce(Duration.zero, +)
            if generating > .zero {
                makeValueHistogram(
                    name: "bodhi_stream_tokens_per_second", labels: [model], buckets: Self.tokenRateBuckets,
                    help: "Generation rate of each stream, after its first token."
                ).record(Double(record.interTokenLatencies.count) / (Double(generating.nanoseconds) / 1e9))
            }
        }
    }

    public func routerFellBack(router: String, from: String, to: String) {
        makeCounter(
            name: "bodhi_router_fallbacks_total", labels: [("router", router), ("from", from), ("to", to)],
            help: "Requests a router sent on to its next target because one failed before answering.").increment()
    }

    public func breakerChanged(target: String, state: BreakerState) {
        makeGauge(
            name: "bodhi_router_breaker_state", labels: [("target", target)],
            help: "A router target's circuit breaker: 0 closed, 1 half-open (one probe), 2 open (skipped).").set(Double(state.level))
    }

    public func queueRejected(model: String) {
        makeCounter(
            name: "bodhi_queue_rejections_total", labels: [("model", model)],
            help: "Inference requests refused with 503 because the model's queue was full.").increment()
    }
}

/// The registry's makers by name and help text (its own take a descriptor), each handle kept
/// once made: the registry checks the name, every label name and the help text character by
/// character on every call, which cost more than the update itself on the request path.
extension BodhiMetrics {
    /// A metric's name and label pairs, flattened: what tells two handles apart.
    struct HandleKey: Hashable {
        let parts: [String]

        init(_ name: String, _ labels: [(String, String)]) {
            var parts = [name]
            parts.reserveCapacity(1 + 2 * labels.count)
            for (label, value) in labels { parts.append(label); parts.append(value) }
            self.parts = parts
        }
    }

    /// A handle of any kind (a name has one kind: the registry enforces it).
    enum Handle {
        case counter(Counter)
        case gauge(Gauge)
        case durationHistogram(DurationHistogram)
        case valueHistogram(ValueHistogram)
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The handle made for `key` so far, or the one `make` makes now, kept from then on. Label
    /// values are models, routes, statuses and policies: bounded sets, which the registry keeps anyway.
    private func handle(_ key: HandleKey, make: () -> Handle) -> Handle {
        if let known = handles.withLock({ $0[key] }) { return known }
        // Made outside the lock: the registry has its own, and gives racers the same handle.
        let made = make()
        handles.withLock { $0[key] = made }
        return made
    }

    func makeCounter(name: String, labels: [(String, String)] = [], help: String) -> Counter {
        let made = handle(HandleKey(name, labels)) { .counter(registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels)) }
        if case .counter(let counter) = made { return counter }
        preconditionFailure("\(name) is not a counter")
    }

    func makeGauge(name: String, labels: [(String, String)] = [], help: String) -> Gauge {
        let made = handle(HandleKey(name, labels)) { .gauge(registry.makeGauge(descriptor: Self.descriptor(name, help), labels: labels)) }
        if case .gauge(let gauge) = made { return gauge }
        preconditionFailure("\(name) is not a gauge")
    }

    func makeDurationHistogram(name: String, labels: [(String, String)], buckets: [Duration], help: String) -> DurationHistogram {
        let made = handle(HandleKey(name, labels)) {
            .durationHistogram(registry.makeDurationHistogram(descriptor: Self.descriptor(name, help), labels: labels, buckets: buckets))
        }
        if case .durationHistogram(let histogram) = made { return histogram }
        preconditionFailure("\(name) is not a duration histogram")
    }

    func makeValueHistogram(name: String, labels: [(String, String)], buckets: [Double], help: String) -> ValueHistogram {
        let made = handle(HandleKey(name, labels)) {
            .valueHistogram(registry.makeValueHistogram(descriptor: Self.descriptor(name, help), labels: labels, buckets: buckets))
        }
        if case .valueHistogram(let histogram) = made { return histogram }
        preconditionFailure("\(name) is not a value histogram")
    }
}

/// This process's resources, from /proc.
enum ProcessStatistics {
    struct Reading {
        var residentBytes: Int64 = 0
        var cpuSeconds: Double = 0
        var openDescriptors = 0
    }

    static func read() -> Reading {
        var reading = Reading()
        reading.residentBytes = SystemResources.residentMemory() ?? 0
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") {
            // After the command name: state is field 3; utime and stime are fields 14 and 15.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
                reading.cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
            }
        }
        reading.openDescriptors = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.count ?? 1) - 1
        return reading
    }
}

/// llama-server's own metrics, merged across engines: each family's HELP and TYPE once, each
/// sample with the engine's `model` label. Names follow Prometheus's rules for exporters, which
/// `promtool check metrics` enforces: `llamacpp:x` becomes `llamacpp_x` (colons are for recording
/// rules), and a counter without the `_total` suffix (llama.cpp's `n_tokens_max`, a high-water
/// mark) is typed as the gauge it is.
enum EngineMetrics {
    static func relabel(_ expositions: [(model: String, text: String)]) -> String {
        var order: [String] = []
        var headers: [String: [String]] = [:]
        var samples: [String: [String]] = [:]
        for (model, text) in expositions {
            let label = "model=\"\(model.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\""
            for rawLine in text.split(separator: "\n") where !rawLine.isEmpty {
                let line = rename(rawLine)
                if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                    let name = String(line.split(separator: " ")[2])
                    if headers[name] == nil { order.append(name); headers[name] = [] }
                    var header = line
                    if header.hasPrefix("# TYPE "), header.hasSuffix(" counter"), !name.hasSuffix("_total") {
                        header = "# TYPE \(name) gauge"
                    }
                    if !(headers[name]!.contains { $0.hasPrefix(String(header.prefix(7))) }) { headers[name]!.append(header) }
                    continue
                }
                if line.hasPrefix("#") { continue }
                guard let nameEnd = line.firstIndex(where: { $0 == "{" || $0 == " " }) else { continue }
                let name = String(line[..<nameEnd])
                let relabelled = line[nameEnd] == "{"
                    ? name + "{" + label + "," + line[line.index(after: nameEnd)...]
                    : name + "{" + label + "}" + line[nameEnd...]
                let family = headers[name] != nil ? name : (order.last { name.hasPrefix($0) } ?? name)
                if headers[family] == nil { order.append(family); headers[family] = [] }
                samples[family, default: []].append(relabelled)
            }
        }
        var output = ""
        for family in order {
            for header in headers[family] ?? [] { output += header + "\n" }
            for sample in samples[family] ?? [] { output += sample + "\n" }
        }
        return output
    }

    /// The line with colons in its metric name (the first word of a sample, the third of a header)
    /// turned into underscores.
    static func rename(_ line: Substring) -> String {
        var words = line.split(separator: " ", maxSplits: line.hasPrefix("# ") ? 3 : 1, omittingEmptySubsequences: false).map(String.init)
        let index = line.hasPrefix("# ") ? 2 : 0
        guard words.count > index else { return String(line) }
        if let brace = words[index].firstIndex(of: "{") {
            words[index] = words[index][..<brace].replacingOccurrences(of: ":", with: "_") + words[index][brace...]
        } else {
            words[index] = words[index].replacingOccurrences(of: ":", with: "_")
        }
        return words.joined(separator: " ")
    }
}
