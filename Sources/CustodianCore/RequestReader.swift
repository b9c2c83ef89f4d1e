/// Reads a `sign` message of either protocol, parsing it once: an object or a 4-element array is a NitroRPC v0
/// message (PROTOCOL.md), a 5-element array a Nitrolite v1 frame (PROTOCOL-v1 §1). Each protocol's codec then checks
/// its own shape, computes what is signed and lays out the reply.
public struct RequestReader: Sendable {
    public init() {}

    /// Checks `message` and returns what it asks, or the first reason (in contract order) to refuse it.
    public func read(_ message: [UInt8]) -> Result<SignableRequest, Denial> {
        switch StrictJSON.parse(message) {
        case .success(let root):
            if let elements = root.value.elements, elements.count == 5 {
                return NitroliteV1Reader().read(root, in: message)
            }
            return NitroRPCv0Reader().read(root, in: message)
        case .failure(let failure):
            return .failure(Self.denial(failure))
        }
    }

    /// The protocol a message's shape names, for recording a refusal of it: a 5-element array is a v1 frame, another
    /// array or an object a v0 message; nil for text that is not JSON.
    public static func protocolOf(_ message: [UInt8]) -> WireProtocol? {
        guard case .success(let root) = StrictJSON.parse(message) else { return nil }
        if let elements = root.value.elements { return elements.count == 5 ? .nitroliteV1 : .nitroRPCv0 }
        return root.value.members == nil ? nil : .nitroRPCv0
    }

    /// The refusal of a message the strict parser could not read.
    public static func denial(_ failure: StrictJSON.Failure) -> Denial {
        switch failure {
        case .malformed(let why): Denial(.payloadMalformed, "not valid JSON: \(why)")
        case .duplicateKey(let key): Denial(.payloadDuplicateKey, "the key \"\(key)\" appears twice in one object")
        }
    }
}

extension WireProtocol {
    /// The hashes of a request from the text an audit record keeps of it (`req`): the request hash the record names
    /// and the digest the key signed. v0: Keccak-256 of the `req` bytes, both. v1: the frame read again, the ABI hash
    /// of its values and that hash's EIP-191 digest. Nil when the text does not read as this protocol's request.
    public func hashes(ofRecorded text: [UInt8]) -> (requestHash: [UInt8], digest: [UInt8])? {
        switch self {
        case .nitroRPCv0:
            let hash = Keccak256.hash(text)
            return (hash, hash)
        case .nitroliteV1:
            guard case .success(let request) = NitroliteV1Reader().read(text) else { return nil }
            return (request.requestHash, request.digest)
        }
    }
}
