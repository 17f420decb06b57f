import Logging

/// What every log line written while serving one request should carry. A task-local value, so
/// that the services a request passes through log its id without each taking it as a parameter.
public enum RequestScope {
    @TaskLocal public static var requestID: String?

    /// Adds `request_id` to the metadata of every logger while a request is being served.
    public static let metadataProvider = Logger.MetadataProvider {
        guard let requestID else { return [:] }
        return ["request_id": .string(requestID)]
    }
}
