import BodhiCore
import BodhiEngine

/// The gateway's shared parts, built once from settings by whoever composes Bodhi: metrics, the
/// admission queue (which reports refusals to the metrics) and the rate limiter.
public struct Gateway: Sendable {
    public let metrics: BodhiMetrics
    public let admission: AdmissionQueue
    public let rateLimiter: RateLimiter

    public init(settings: Settings) {
        metrics = BodhiMetrics()
        admission = AdmissionQueue(maxQueue: settings.maxQueue, observer: metrics)
        rateLimiter = RateLimiter(settings: settings.rateLimits)
    }

    /// Who hears about every finished inference request: the metrics, and the limiter for tokens.
    public var observers: [any InferenceObserver] { [metrics, rateLimiter] }

    /// Puts changed settings into effect at once: the queue bound and every limit.
    public func apply(_ settings: Settings) {
        admission.setMaxQueue(settings.maxQueue)
        rateLimiter.reconfigure(settings.rateLimits)
    }
}
