/// The text of policies/default.toml, compiled in so that `custodian dev` works from the binary alone.
/// A test keeps the two identical.
public enum DefaultPolicy {
    public static let text = """
        # custodian default policy (CONTRACT §5, version 1).
        #
        # What it allows: two-party (up to 8) NitroRPC/0.2 and 0.4 sessions in usdc in which this key takes part and
        # cannot be outvoted; closes and states whose allocations sum exactly to the session's total, list every
        # participant once, and cost this key at most 1000 usdc per session and 5000 usdc per day.
        #
        # Example allowed: Tests/Vectors/close_policy/allow_exact_sum.json (A 75.5 + B 74.5 of a 150 usdc session).
        # Example refused: Tests/Vectors/close_policy/reject_sum_off_by_one_unit.json (149.999999: policy.sum_mismatch).
        version = 1

        [requests]
        methods = ["create_app_session", "submit_app_state", "close_app_session"]
        max_age_ms = 30000        # refuse timestamps older than this (ClearNode accepts up to 60 s)
        max_future_ms = 5000      # refuse timestamps further ahead: ClearNode does not check the future

        [sessions]
        protocols = ["NitroRPC/0.2", "NitroRPC/0.4"]
        max_participants = 8
        allow_quorum_without_us = false

        [assets.usdc]
        decimals = 6
        max_session_total = "10000"
        max_own_funding = "1000"
        max_allocation = "10000"
        max_own_loss = "1000"

        [counterparties]
        allow = []                # empty: any counterparty

        [velocity]
        window_s = 86400
        max_own_loss = { usdc = "5000" }
        """
}
