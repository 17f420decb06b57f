import BodhiCore
import BodhiEngine
import Foundation
import Hummingbird
import Prometheus

/// Bodhi's Prometheus metrics: its own (HTTP, inference, engines, process) from one registry,
/// and each engine's llama.cpp metrics re-exposed with a `model` label.
public final class BodhiMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    static let durationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]

    public init() {}

    /// One finished HTTP request, by the route pattern (not the raw path, which would make
    /// unbounded label values).
    func recordRequest(method: String, route: String, status: Int, duration: Duration) {
        let labels = [("method", method), ("route", route), ("status", String(status))]
        registry.makeCounter(name: "bodhi_http_requests_total", labels: labels, help: "HTTP requests served.").increment()
        registry.makeDurationHistogram(
            name: "bodhi_http_request_duration_seconds", labels: [("method", method), ("route", route)],
            buckets: Self.durationBuckets, help: "Time to the response head (streams continue after it)."
        ).recordNanoseconds(duration.nanoseconds)
    }

    /// The exposition: Bodhi's metrics, the engines' state and the process's, then each engine's own.
    func exposition(supervisor: EngineSupervisor) async -> String {
        let engines = await supervisor.status()
        registry.makeGauge(name: "bodhi_loaded_models", help: "Engines loaded or loading.").set(Double(engines.count))
        for engine in engines {
            registry.makeGauge(name: "bodhi_engine_restarts", labels: [("model", engine.model)],
                               help: "Restarts of the model's engine after it died.").set(Double(engine.restarts))
            registry.makeGauge(name: "bodhi_engine_in_flight_requests", labels: [("model", engine.model)],
                               help: "Requests the engine is serving.").set(Double(engine.inFlight))
            if let memory = engine.memoryBytes {
                registry.makeGauge(name: "bodhi_engine_resident_memory_bytes", labels: [("model", engine.model)],
                                   help: "Resident memory of the engine process.").set(Double(memory))
            }
        }
        let process = ProcessStatistics.read()
        registry.makeGauge(name: "process_resident_memory_bytes", help: "Resident memory of Bodhi.").set(Double(process.residentBytes))
        registry.makeGauge(name: "process_cpu_seconds", help: "CPU time Bodhi used (user and system).").set(process.cpuSeconds)
        registry.makeGauge(name: "process_open_fds", help: "Open file descriptors.").set(Double(process.openDescriptors))
        var text = registry.emitToString()
        text += EngineMetrics.relabel(await supervisor.engineMetrics())
        return text
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
/// sample with the engine's `model` label.
enum EngineMetrics {
    static func relabel(_ expositions: [(model: String, text: String)]) -> String {
        var order: [String] = []
        var headers: [String: [String]] = [:]
        var samples: [String: [String]] = [:]
        for (model, text) in expositions {
            let label = "model=\"\(model.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\""
            for line in text.split(separator: "\n") where !line.isEmpty {
                if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                    let name = String(line.split(separator: " ")[2])
                    if headers[name] == nil { order.append(name); headers[name] = [] }
                    if !(headers[name]!.contains { $0.hasPrefix(String(line.prefix(7))) }) { headers[name]!.append(String(line)) }
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
}

/// Times every request and counts it by route and status.
struct MetricsMiddleware: RouterMiddleware {
    typealias Context = BodhiRequestContext
    let metrics: BodhiMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let route = context.endpointPath ?? "unmatched"
        do {
            let response = try await next(request, context)
            metrics.recordRequest(method: request.method.rawValue, route: route, status: Int(response.status.code), duration: .now - started)
            return response
        } catch {
            let status = (error as? BodhiError)?.status ?? (error as? any HTTPResponseError).map { Int($0.status.code) } ?? 500
            metrics.recordRequest(method: request.method.rawValue, route: route, status: status, duration: .now - started)
            throw error
        }
    }
}
