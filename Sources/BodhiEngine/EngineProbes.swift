import AsyncHTTPClient

/// Asks engines about themselves over HTTP: their own `/health` and `/metrics` (llama-server's),
/// 2 s at most each.
public struct EngineProbes: Sendable {
    let http: HTTPClient

    public init(http: HTTPClient) {
        self.http = http
    }

    /// Whether the engine says it is healthy, and in what words.
    func health(of endpoint: EngineEndpoint) async -> (healthy: Bool, detail: String) {
        do {
            let response = try await http.execute(request(endpoint, "/health"), timeout: .seconds(2))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            return (response.status == .ok, response.status == .ok ? "ok" : "answered \(response.status.code)")
        } catch {
            return (false, "no answer: \(error)")
        }
    }

    /// The engine's Prometheus exposition; nil when it gives none.
    func metrics(of endpoint: EngineEndpoint) async -> String? {
        guard let response = try? await http.execute(request(endpoint, "/metrics"), timeout: .seconds(2)), response.status == .ok,
              let body = try? await response.body.collect(upTo: 1 << 20) else { return nil }
        return String(buffer: body)
    }

    private func request(_ endpoint: EngineEndpoint, _ path: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: endpoint.baseURL + path)
        request.headers.add(name: "Authorization", value: endpoint.authorization)
        return request
    }
}
