import Foundation

/// What a GGUF file's name says about it: the quantization label and, for split models,
/// which part of how many it is.
public struct GGUFFileName: Sendable, Equatable {
    /// The file name without directories, e.g. `SmolLM2-135M-Instruct.Q4_1.gguf`.
    public let fileName: String
    /// The quantization label in upper case (`Q4_1`, `Q4_K_M`, `IQ2_XXS`, `F16`, `BF16`), if
    /// the name carries one.
    public let quantization: String?
    /// For `name-00001-of-00003.gguf`: part 1 of 3; nil for single-file models.
    public let split: (part: Int, count: Int)?
    /// The name with any split suffix removed: identical for every part of one model.
    public let stem: String

    // Built once: a regex literal is parsed again each time it is evaluated, and names are
    // parsed for every file on every scan.
    // Regex does not declare Sendable; these are never mutated, and the standard library compiles
    // a regex's program once, atomically, so concurrent matches only read it.
    private nonisolated(unsafe) static let splitSuffix = /(.*)-(\d{5})-of-(\d{5})/
    private nonisolated(unsafe) static let quantizationLabel = /I?Q[1-8](?:_[0-9A-Z]{1,3}){0,3}|TQ[12]_0|BF16|F16|F32|FP16|FP32|MXFP4(?:_MOE)?/

    public static func == (lhs: GGUFFileName, rhs: GGUFFileName) -> Bool {
        lhs.fileName == rhs.fileName
    }

    public init?(_ fileName: String) {
        guard fileName.lowercased().hasSuffix(".gguf") else { return nil }
        self.fileName = fileName
        var base = String(fileName.dropLast(5))
        if let match = base.wholeMatch(of: Self.splitSuffix), let part = Int(match.2), let count = Int(match.3),
           part >= 1, count >= 1, part <= count {
            split = (part, count)
            base = String(match.1)
        } else {
            split = nil
        }
        stem = base
        quantization = GGUFFileName.quantization(in: base)
    }

    /// Projector files for vision models are not models of their own.
    public var isAuxiliary: Bool {
        fileName.lowercased().hasPrefix("mmproj")
    }

    /// The projector a model in the same folder gets, of those `paths` name: the full-precision one
    /// where there are several (what llama.cpp's converters make and most repositories ship), else
    /// the first by name.
    public static func projector(among paths: [String]) -> String? {
        let projectors = paths.filter { GGUFFileName(($0 as NSString).lastPathComponent)?.isAuxiliary == true }.sorted()
        for precision in ["F16", "BF16", "F32", "Q8_0"] {
            if let match = projectors.first(where: { GGUFFileName(($0 as NSString).lastPathComponent)?.quantization == precision }) { return match }
        }
        return projectors.first
    }

    /// The last name component that looks like a quantization label. Names use `.`, `-` or
    /// `_` as separators, and labels themselves contain `_` (`Q4_K_M`), so candidates are
    /// tried from the longest suffix of `_`-joined pieces.
    static func quantization(in base: String) -> String? {
        let tokens = base.split(whereSeparator: { $0 == "." || $0 == "-" }).map(String.init)
        for token in tokens.reversed() {
            let pieces = token.split(separator: "_").map(String.init)
            for start in pieces.indices {
                let candidate = pieces[start...].joined(separator: "_").uppercased()
                if candidate.wholeMatch(of: quantizationLabel) != nil {
                    return candidate
                }
            }
        }
        return nil
    }

}
