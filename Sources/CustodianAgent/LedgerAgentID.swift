import CPostgres
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// An agent's name in the ledger database, kept in its state directory (`ledger.agent`), and what a start reads
/// from its files about the database.
public enum LedgerAgentID {
    static let fileName = "ledger.agent"

    /// The state directory's agent name, created (32 random hex digits, mode 0600) on the first start with a ledger
    /// database.
    public static func read(orCreateIn stateDirectory: String) throws(AgentStartError) -> String {
        let path = stateDirectory + "/" + fileName
        if FileIO.exists(path) {
            let bytes: [UInt8]
            do { bytes = try FileIO.readAll(path, limit: 4096) } catch { throw AgentStartError("\(error)") }
            let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard text.count == 32, text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
            else {
                throw AgentStartError(
                    "\(path) does not hold an agent name (32 lower-case hex digits)",
                    hint: "it names this state directory in the ledger database: restore it from a backup")
            }
            return text
        }
        var generator = SystemRandomNumberGenerator()
        let name = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        do { try FileIO.createPrivateFile(path, Array((name + "\n").utf8)) } catch {
            throw AgentStartError("cannot create \(path): \(error)")
        }
        return name
    }

    static let key = Array(#","ledger_txn":"#.utf8)

    /// The last ledger transaction named in the log files (newest last), searched from the end of the newest file
    /// that names one (nil: none does).
    public static func lastLedgerTxn(in files: [String]) -> Int64? {
        for path in files.reversed() {
            guard let bytes = try? FileIO.readAll(path) else { continue }
            var end = bytes.count
            while end > 0 {
                guard let at = lastIndex(of: key, in: bytes, before: end) else { break }
                if let value = number(in: bytes[...], at: at + key.count) { return value }
                end = at
            }
        }
        return nil
    }

    /// The decimal number (at most 18 digits) at `index` of `bytes` (nil: no digit there).
    static func number(in bytes: ArraySlice<UInt8>, at index: Int) -> Int64? {
        var index = index
        var value: Int64 = 0
        var digits = 0
        while index < bytes.endIndex, bytes[index] >= 0x30, bytes[index] <= 0x39, digits < 18 {
            value = value * 10 + Int64(bytes[index] - 0x30)
            index += 1
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    private static func lastIndex(of needle: [UInt8], in haystack: [UInt8], before end: Int) -> Int? {
        var start = end - needle.count
        while start >= 0 {
            if haystack[start] == needle[0], haystack[start..<(start + needle.count)].elementsEqual(needle) {
                return start
            }
            start -= 1
        }
        return nil
    }

    /// Whether a libpq URL may reach its server over TCP (any host that is not a Unix socket directory): the
    /// system-call filter then allows AF_INET and AF_INET6 stream sockets. A URL libpq cannot parse counts as TCP
    /// (the connection fails with libpq's own error).
    public static func mayUseTCP(_ url: String) -> Bool {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &error) else {
            if let error { PQfreemem(error) }
            return true
        }
        defer { PQconninfoFree(options) }
        var hosts: [String] = []
        var hostaddr = false
        var index = 0
        while let keyword = options[index].keyword {
            let name = String(cString: keyword)
            if let value = options[index].val {
                let text = String(cString: value)
                if name == "host" { hosts = text.split(separator: ",").map(String.init) }
                if name == "hostaddr" && !text.isEmpty { hostaddr = true }
            }
            index += 1
        }
        if hostaddr { return true }
        // No host: libpq's default, the Unix socket directory.
        return hosts.contains { !$0.hasPrefix("/") && !$0.hasPrefix("@") && !$0.isEmpty }
    }
}
