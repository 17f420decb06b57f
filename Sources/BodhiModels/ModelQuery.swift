import BodhiCore

/// Filtering, sorting and paging of the model list, as `GET /bodhi/v1/models` offers it.
public struct ModelQuery: Sendable, Equatable {
    public enum Sort: String, Sendable, CaseIterable { case name, size }

    /// Case-insensitive substring of the model id.
    public var name: String?
    public var quantization: String?
    public var capability: String?
    public var sort: Sort = .name
    public var descending = false
    /// 1-based.
    public var page = 1
    public var pageSize = 50

    public static let maxPageSize = 500

    public init() {}

    /// Reads query parameters; unknown values are a 400 that says what is accepted.
    public init(parameters: [String: String]) throws {
        name = parameters["name"].flatMap { $0.isEmpty ? nil : $0 }
        quantization = parameters["quant"].flatMap { $0.isEmpty ? nil : $0 }
        capability = parameters["capability"].flatMap { $0.isEmpty ? nil : $0 }
        if let sortText = parameters["sort"] {
            guard let sort = Sort(rawValue: sortText) else {
                throw BodhiError.invalidRequest("'sort' must be one of: \(Sort.allCases.map(\.rawValue).joined(separator: ", ")).", param: "sort")
            }
            self.sort = sort
        }
        if let order = parameters["order"] {
            guard order == "asc" || order == "desc" else {
                throw BodhiError.invalidRequest("'order' must be asc or desc.", param: "order")
            }
            descending = order == "desc"
        }
        page = try Self.integer(parameters["page"], name: "page", default: 1, range: 1...Int(Int32.max))
        pageSize = try Self.integer(parameters["page_size"], name: "page_size", default: 50, range: 1...Self.maxPageSize)
    }

    public struct Page: Sendable, Encodable {
        public let data: [ModelDescription]
        public let total: Int
        public let page: Int
        public let pageSize: Int

        enum CodingKeys: String, CodingKey {
            case data, total, page
            case pageSize = "page_size"
        }
    }

    public func apply(to models: [ModelDescription]) -> Page {
        let matching = models.filter { model in
            if let name, !model.entry.id.lowercased().contains(name.lowercased()) { return false }
            if let quantization, model.entry.quantization?.lowercased() != quantization.lowercased() { return false }
            if let capability, !model.capabilities.contains(capability.lowercased()) { return false }
            return true
        }
        let sorted = matching.sorted { lhs, rhs in
            let ascending: Bool
            switch sort {
            case .name: ascending = lhs.entry.id < rhs.entry.id
            case .size: ascending = lhs.entry.sizeBytes != rhs.entry.sizeBytes
                ? lhs.entry.sizeBytes < rhs.entry.sizeBytes : lhs.entry.id < rhs.entry.id
            }
            return descending ? !ascending : ascending
        }
        let start = min((page - 1) * pageSize, sorted.count)
        let end = min(start + pageSize, sorted.count)
        return Page(data: Array(sorted[start..<end]), total: sorted.count, page: page, pageSize: pageSize)
    }

    private static func integer(_ text: String?, name: String, default fallback: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            throw BodhiError.invalidRequest("'\(name)' must be a whole number from \(range.lowerBound) to \(range.upperBound).", param: name)
        }
        return value
    }
}
