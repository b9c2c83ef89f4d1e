extension AppDefinition {
    /// `app_session_id` as the session's node computes it, as `0x` + 64 lower-case hex digits; it does not depend
    /// on the client's text. v0 (ClearNode): keccak256 of Go's `json.Marshal` of its AppDefinition struct
    /// (PROTOCOL.md §9). v1 (nitronode): keccak256 of the ABI-encoded definition (PROTOCOL-v1 §3.1).
    public var appSessionID: String {
        switch wire {
        case .nitroRPCv0: Hex.encode(Keccak256.hash(goJSON), prefixed: true)
        case .nitroliteV1: v1AppSessionID
        }
    }

    /// The bytes Go's encoding/json writes for ClearNode's struct: fixed field order, compact, Go string escapes.
    public var goJSON: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out.append(contentsOf: #"{"application":"#.utf8)
        GoJSON.appendString(application ?? "", to: &out)
        out.append(contentsOf: #","protocol":"#.utf8)
        GoJSON.appendString(protocolName, to: &out)
        out.append(contentsOf: #","participants":["#.utf8)
        for (index, participant) in participants.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            GoJSON.appendString(participant.checksummed, to: &out)
        }
        out.append(contentsOf: #"],"weights":["#.utf8)
        out.append(contentsOf: weights.map(String.init).joined(separator: ",").utf8)
        out.append(contentsOf: #"],"quorum":"#.utf8)
        out.append(contentsOf: String(quorum).utf8)
        out.append(contentsOf: #","challenge":"#.utf8)
        out.append(contentsOf: String(challenge).utf8)
        out.append(contentsOf: #","nonce":"#.utf8)
        out.append(contentsOf: String(nonce).utf8)
        out.append(UInt8(ascii: "}"))
        return out
    }
}

/// Go's encoding/json string encoding (Go ≥ 1.22, as ClearNode is built).
enum GoJSON {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x00..<0x20, 0x3C, 0x3E, 0x26, 0x2028, 0x2029:
                // Other controls, and HTML-sensitive characters, as \u00xx (lower-case hex).
                let value = scalar.value
                out.append(contentsOf: [0x5C, UInt8(ascii: "u")])
                for shift in [12, 8, 4, 0] {
                    out.append(hexDigits[Int((value >> UInt32(shift)) & 0xF)])
                }
            default:
                out.append(contentsOf: String(scalar).utf8)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
