import CustodianCore
import Foundation
import Testing

@testable import CustodianAgent

@Suite("The ledger database's pieces that need no server")
struct LedgerDatabaseUnitTests {
    @Test(
        "Whether a libpq URL may use TCP (the filter then allows IP stream sockets)",
        arguments: [
            ("postgresql://custodian@/custodian?host=/run/postgresql", false),
            ("postgresql:///custodian", false),
            ("host=/tmp dbname=custodian", false),
            ("postgresql://custodian@/custodian?host=@abstract", false),
            ("postgresql://custodian@db.internal:5432/custodian?sslmode=verify-full", true),
            ("postgresql://custodian@/custodian?host=10.0.0.1", true),
            ("postgresql://custodian@/custodian?host=/run/postgresql,db.internal", true),
            ("hostaddr=10.0.0.1 host=/tmp dbname=custodian", true),
            ("not a url at all ===", true),
        ])
    func tcp(_ url: String, _ expected: Bool) {
        #expect(LedgerAgentID.mayUseTCP(url) == expected, "\(url)")
    }

    @Test("An import brings the outflows the database lacks, as many of each as the state directory has more")
    func outflowsToImport() throws {
        func outflow(_ time: UInt64, _ amount: String) throws -> ChannelPolicy.Outflow {
            ChannelPolicy.Outflow(timeMs: time, asset: "usdc", amount: try #require(Amount(amount)))
        }
        let local = [try outflow(1, "5"), try outflow(1, "5"), try outflow(2, "7"), try outflow(3, "1")]
        let present = [try outflow(1, "5"), try outflow(3, "1"), try outflow(9, "9")]
        #expect(StateDirectory.outflows(local, notIn: present) == [try outflow(1, "5"), try outflow(2, "7")])
        #expect(StateDirectory.outflows(local, notIn: local).isEmpty)
        #expect(StateDirectory.outflows(local, notIn: []) == local)
    }

    @Test("A home channel's entry survives its encoding for a ledger import; other bytes do not decode")
    func channelEncoding() throws {
        let copy = ChannelCopy(
            channelID: "0x" + String(repeating: "ab", count: 32),
            user: try #require(Address(eip55: "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638")), asset: "usdc",
            decimals: 6, epoch: 0, version: 3,
            ledger: ChannelStateWire.HomeLedger(
                token: try #require(Address(eip55: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")), chainID: 8453,
                userBalance: try #require(Amount("180")), userNetFlow: try #require(Amount("200")),
                nodeBalance: .zero, nodeNetFlow: try #require(Amount(signed: "-20"))))
        let entry = ChannelEntry(
            copy: copy, lastSigned: (3, Array(repeating: 7, count: 32)), nodeIssuedBase: false, coSigned: true,
            halted: "a reason")
        let bytes = LedgerState.encodeChannel(entry)
        #expect(LedgerState.decodeChannel(bytes) == entry)
        #expect(LedgerState.decodeChannel(bytes + [0]) == nil)
        #expect(LedgerState.decodeChannel(Array(bytes.dropLast())) == nil)
        #expect(LedgerState.decodeChannel(Array(bytes.dropFirst(3))) == nil)
    }

    @Test("bytea in hex output decodes; anything else does not")
    func bytea() {
        #expect(PostgresClient.decodeBytea("\\x00ff0A") == [0x00, 0xFF, 0x0A])
        #expect(PostgresClient.decodeBytea("\\x") == [])
        #expect(PostgresClient.decodeBytea("\\x0") == nil)
        #expect(PostgresClient.decodeBytea("00ff") == nil)
        #expect(PostgresClient.decodeBytea("\\xzz") == nil)
    }

    @Test("The last ledger transaction a log names, from its end; none in a log written without a database")
    func lastLedgerTxn() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-txn-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let older = directory + "/a.log"
        let newer = directory + "/b.log"
        try Data(#"{"seq":1,"event":"sign","ledger_txn":41,"prev":"00"}"#.utf8 + [0x0A]).write(
            to: URL(fileURLWithPath: older))
        try Data(
            (#"{"seq":2,"event":"sign","ledger_txn":42,"prev":"00"}"# + "\n"
                + #"{"seq":3,"event":"checkpoint","prev":"00"}"# + "\n").utf8
        ).write(to: URL(fileURLWithPath: newer))
        #expect(LedgerAgentID.lastLedgerTxn(in: [older, newer]) == 42)
        #expect(LedgerAgentID.lastLedgerTxn(in: [older]) == 41)
        try Data(#"{"seq":4,"event":"start","prev":"00"}"#.utf8 + [0x0A]).write(to: URL(fileURLWithPath: newer))
        #expect(LedgerAgentID.lastLedgerTxn(in: [older, newer]) == 41)
        #expect(LedgerAgentID.lastLedgerTxn(in: [newer]) == nil)
    }
}
