import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// The next state custodian builds for a home channel, against a model of the channel's balance written here from
/// PROTOCOL-v1-channels §1.2 alone (integers of the token's smallest unit, no custodian type): random transitions,
/// each built state's ledger equal to the model's, refusals where the model has no next state, and every field of a
/// built state bound (a state that differs in any one field is refused, naming it).
@Suite("v1 channel transitions against a model of §1.2")
struct ChannelTransitionPropertyTests {
    /// The model: a ledger in micro-units of a 6-decimal token.
    struct Model: Equatable {
        var userBalance: Int64
        var userNetFlow: Int64
        var nodeBalance: Int64
        var nodeNetFlow: Int64

        /// §1.2, row by row; nil where the transition cannot be signed (it would take more than the balance, or an
        /// amount the type does not take).
        func after(_ type: UInt8, _ amount: Int64) -> Model? {
            var next = self
            switch type {
            case 1:  // acknowledgement: a = 0, nothing moves
                guard amount == 0 else { return nil }
            case 10:  // home_deposit: ub += a, unf += a
                guard amount > 0 else { return nil }
                next.userBalance += amount
                next.userNetFlow += amount
            case 11:  // home_withdrawal: ub −= a, unf −= a
                guard amount > 0, amount <= userBalance else { return nil }
                next.userBalance -= amount
                next.userNetFlow -= amount
            case 30, 40:  // transfer_send, commit: ub −= a, nnf −= a
                guard amount > 0, amount <= userBalance else { return nil }
                next.userBalance -= amount
                next.nodeNetFlow -= amount
            case 200:  // finalize: a = ub; unf −= ub; ub = 0
                guard amount == userBalance else { return nil }
                next.userNetFlow -= userBalance
                next.userBalance = 0
            default:
                return nil
            }
            return next
        }
    }

    static let user = Address(eip55: "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638")
    static let token = Address(anyCase: "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913")
    static let channel = "0x017f13816de5b43314eb79376aaa9d846e566cccb4a2ddacdf333549b9aca0c1"

    /// Micro-units as a decimal text ("1.5" for 1,500,000), written here, not by Amount.
    static func text(_ micro: Int64) -> String {
        let sign = micro < 0 ? "-" : ""
        let magnitude = micro.magnitude
        var fraction = String(magnitude % 1_000_000)
        fraction = String(repeating: "0", count: 6 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return sign + String(magnitude / 1_000_000) + (fraction.isEmpty ? "" : "." + fraction)
    }

    static func amount(_ micro: Int64) throws -> Amount { try #require(Amount(signed: text(micro))) }

    static func micro(_ amount: Amount) -> String { "\(amount)" }

    static func ledger(_ model: Model) throws -> ChannelStateWire.HomeLedger {
        ChannelStateWire.HomeLedger(
            token: try #require(token), chainID: 8453, userBalance: try amount(model.userBalance),
            userNetFlow: try amount(model.userNetFlow), nodeBalance: try amount(model.nodeBalance),
            nodeNetFlow: try amount(model.nodeNetFlow))
    }

    @Test("random transitions: the built ledger is the model's, refusals exactly where the model has no next state")
    func randomWalks() throws {
        let cases = ProcessInfo.processInfo.environment["CUSTODIAN_PROPERTY_CASES"].flatMap { Int($0) } ?? 300
        var random = SplitMix64(state: 0x6368_616E_6E65_6C73)
        let user = try #require(Self.user)
        let recipient = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        let session = "0x" + String(repeating: "ab", count: 32)
        var built = 0
        var refused = 0
        for _ in 0..<cases {
            var model = Model(userBalance: 0, userNetFlow: 0, nodeBalance: 0, nodeNetFlow: 0)
            var copy = ChannelCopy(
                channelID: Self.channel, user: user, asset: "usdc", decimals: 6,
                epoch: UInt64.random(in: 0...3, using: &random),
                version: UInt64.random(in: 0...1000, using: &random), ledger: try Self.ledger(model))
            for _ in 0..<24 {
                let type = [1, 10, 10, 11, 30, 40, 200, 31, 41].randomElement(using: &random) ?? 10
                var micro: Int64
                switch Int.random(in: 0..<5, using: &random) {
                case 0: micro = model.userBalance  // the whole balance
                case 1: micro = model.userBalance + Int64.random(in: 1...1_000_000, using: &random)  // more than it
                case 2: micro = 0
                default: micro = Int64.random(in: 1...50_000_000, using: &random)
                }
                if type == 1 && Bool.random(using: &random) { micro = 0 }
                let account =
                    switch type {
                    case 30: recipient
                    case 40: session
                    case 1: ChannelState.zeroID
                    default: Self.channel
                    }
                let expected = model.after(UInt8(type), micro)
                guard let transition = ChannelTransition(rawValue: UInt8(type)) else {
                    Issue.record("type \(type) is in §1.2's table")
                    continue
                }
                switch ChannelState.next(after: copy, transition, accountID: account, amount: try Self.amount(micro)) {
                case .failure:
                    #expect(expected == nil, "type \(type) of \(Self.text(micro)) on \(model) was refused")
                    refused += 1
                case .success(let state):
                    guard let next = expected else {
                        Issue.record("type \(type) of \(Self.text(micro)) on \(model) was built: \(state.homeLedger)")
                        continue
                    }
                    built += 1
                    #expect(state.homeLedger == (try Self.ledger(next)))
                    // What the contract checks of every state: allocations sum = net-flow sum, allocations ≥ 0.
                    #expect(next.userBalance + next.nodeBalance == next.userNetFlow + next.nodeNetFlow)
                    #expect(state.version == copy.version + 1 && state.epoch == copy.epoch)
                    #expect(state.homeChannelID == Self.channel && state.transition.type == UInt8(type))
                    #expect(
                        state.id
                            == Hex.encode(
                                ChannelState.stateID(
                                    user: user, asset: "usdc", epoch: copy.epoch, version: copy.version + 1),
                                prefixed: true))
                    try Self.everyFieldBound(state, &random)
                    model = next
                    copy.version = state.version
                    copy.ledger = state.homeLedger
                }
                if type == 200, expected != nil { break }  // the channel is closing: a new one would follow
            }
        }
        #expect(built > cases * 4 && refused > cases * 2, "built \(built), refused \(refused)")
    }

    /// A state that differs from the built one in any single field is refused, and the refusal names that field.
    static func everyFieldBound(_ built: ChannelStateWire, _ random: inout SplitMix64) throws {
        #expect(ChannelState.difference(sent: built, built: built) == nil)
        let one = try #require(Amount("0.000001"))
        let other = try #require(Address(anyCase: "0x" + String(repeating: "1", count: 40)))
        var mutations: [(String, (inout ChannelStateWire) -> Void)] = [
            ("version", { $0.version &+= 1 }),
            ("epoch", { $0.epoch &+= 1 }),
            ("asset", { $0.asset = "usdt" }),
            ("user_wallet", { $0.userWallet = other }),
            ("home_channel_id", { $0.homeChannelID = "0x" + String(repeating: "0", count: 64) }),
            ("id", { $0.id = "0x" + String(repeating: "f", count: 64) }),
            ("transition.type", { $0.transition.type = $0.transition.type == 30 ? 40 : 30 }),
            ("transition.account_id", { $0.transition.accountID = "0x" + String(repeating: "2", count: 40) }),
            ("transition.tx_id", { $0.transition.transactionID = "0x" + String(repeating: "3", count: 64) }),
            ("transition.amount", { $0.transition.amount = $0.transition.amount + one }),
            ("home_ledger.token_address", { $0.homeLedger.token = other }),
            ("home_ledger.blockchain_id", { $0.homeLedger.chainID &+= 1 }),
            ("home_ledger.user_balance", { $0.homeLedger.userBalance = $0.homeLedger.userBalance + one }),
            ("home_ledger.user_net_flow", { $0.homeLedger.userNetFlow = $0.homeLedger.userNetFlow - one }),
            ("home_ledger.node_balance", { $0.homeLedger.nodeBalance = $0.homeLedger.nodeBalance + one }),
            ("home_ledger.node_net_flow", { $0.homeLedger.nodeNetFlow = $0.homeLedger.nodeNetFlow - one }),
        ]
        mutations.shuffle(using: &random)
        for (field, mutate) in mutations.prefix(4) {
            var sent = built
            mutate(&sent)
            let denial = ChannelState.difference(sent: sent, built: built)
            #expect(denial?.reason == .ledgerMismatch, "\(field)")
            #expect(denial?.figures.first?.value == field, "\(field): \(denial?.detail ?? "not refused")")
        }
    }

    @Test("node-issued transitions are never built for the user; escrow and migration types are not transitions")
    func notSigned() throws {
        let user = try #require(Self.user)
        let copy = ChannelCopy(
            channelID: Self.channel, user: user, asset: "usdc", decimals: 6, epoch: 0, version: 3,
            ledger: try Self.ledger(
                Model(userBalance: 5_000_000, userNetFlow: 5_000_000, nodeBalance: 0, nodeNetFlow: 0)))
        for transition in [ChannelTransition.transferReceive, .release] {
            guard
                case .failure(let denial) = ChannelState.next(
                    after: copy, transition, accountID: Self.channel, amount: try Self.amount(1))
            else {
                Issue.record("\(transition) was built")
                continue
            }
            #expect(denial.reason == .payloadMethodNotAllowed)
        }
        for type: UInt8 in [0, 20, 21, 100, 110, 120, 201] { #expect(ChannelTransition(rawValue: type) == nil) }
        // More decimals than the asset has: refused, not rounded.
        guard
            case .failure(let denial) = ChannelState.next(
                after: copy, .transferSend, accountID: "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
                amount: try #require(Amount("0.0000001")))
        else {
            Issue.record("a 7-decimal amount was built")
            return
        }
        #expect(denial.reason == .precision)
    }
}
