/// The allocation policy (CONTRACT §5), as values. Parsing it from TOML is the agent's job; evaluating it is here.
public struct Policy: Sendable {
    /// Limits for one asset; an asset the policy does not list is refused.
    public struct AssetRule: Sendable, Equatable {
        public var decimals: Int
        public var maxSessionTotal: Amount?
        public var maxOwnFunding: Amount?
        public var maxAllocation: Amount?
        public var maxOwnLoss: Amount?
        /// This key's funding at risk summed over all its open sessions (`max_open_funding`): a flood of small
        /// sessions cannot add up to a large one.
        public var maxOpenFunding: Amount?

        public init(
            decimals: Int, maxSessionTotal: Amount? = nil, maxOwnFunding: Amount? = nil, maxAllocation: Amount? = nil,
            maxOwnLoss: Amount? = nil, maxOpenFunding: Amount? = nil
        ) {
            self.decimals = decimals
            self.maxSessionTotal = maxSessionTotal
            self.maxOwnFunding = maxOwnFunding
            self.maxAllocation = maxAllocation
            self.maxOwnLoss = maxOwnLoss
            self.maxOpenFunding = maxOpenFunding
        }
    }

    /// A rolling-window cap on the increases of committed loss of the states this key signed (CONTRACT §5).
    public struct Velocity: Sendable, Equatable {
        public var windowSeconds: UInt64
        public var maxOwnLoss: [ExactString: Amount]

        public init(windowSeconds: UInt64, maxOwnLoss: [ExactString: Amount]) {
            self.windowSeconds = windowSeconds
            self.maxOwnLoss = maxOwnLoss
        }
    }

    public var methods: Set<RequestMethod>
    public var maxAgeMs: UInt64
    public var maxFutureMs: UInt64
    /// Allowed `definition.application` values; nil allows any.
    public var applications: [ExactString]?
    public var protocols: [ExactString]
    public var maxParticipants: Int
    public var allowQuorumWithoutUs: Bool
    public var assets: [ExactString: AssetRule]
    /// Empty allows any counterparty.
    public var counterparties: Set<Address>
    public var velocity: Velocity?
    /// v1 home channels (`[channels]`); nil refuses every channel state.
    public var channels: ChannelPolicy?
    /// Reasons that only warn: the request is signed and the would-be refusal recorded (`[enforcement]`).
    public var warn: Set<ReasonCode> = []
    /// False only while replaying decisions that were allowed before: rules are then not checked.
    var enforcing = true

    public init(
        methods: Set<RequestMethod> = Set(RequestMethod.allCases), maxAgeMs: UInt64 = 30_000,
        maxFutureMs: UInt64 = 5_000, applications: [ExactString]? = nil,
        protocols: [ExactString] = ["NitroRPC/0.2", "NitroRPC/0.4"], maxParticipants: Int = 8,
        allowQuorumWithoutUs: Bool = false, assets: [ExactString: AssetRule] = [:], counterparties: Set<Address> = [],
        velocity: Velocity? = nil
    ) {
        self.methods = methods
        self.maxAgeMs = maxAgeMs
        self.maxFutureMs = maxFutureMs
        self.applications = applications
        self.protocols = protocols
        self.maxParticipants = maxParticipants
        self.allowQuorumWithoutUs = allowQuorumWithoutUs
        self.assets = assets
        self.counterparties = counterparties
        self.velocity = velocity
    }
}

/// The outcome of evaluating a request: a value, never a thrown "no".
public enum Decision: Sendable {
    /// Sign, then apply `effect` to the ledger.
    case allow(Effect)
    /// Refuse, with the reason code and the figures.
    case deny(Denial)
}

/// What an allowed request changes in the ledger.
public struct Effect: Sendable {
    /// The session as it stands after the request (nil when nothing changes, e.g. an identical retry).
    public var session: SessionRecord?
    /// Per asset, how much this state raised the session's committed loss (the largest loss among the states
    /// signed for it): counted in the velocity window when the state is signed.
    public var realizedLoss: [ExactString: Amount]
    /// The refusals a warn-mode policy let through: signed, and recorded as warnings.
    public var warnings: [Denial]

    public init(session: SessionRecord?, realizedLoss: [ExactString: Amount] = [:], warnings: [Denial] = []) {
        self.session = session
        self.realizedLoss = realizedLoss
        self.warnings = warnings
    }
}
