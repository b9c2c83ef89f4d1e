#!/usr/bin/env python3
"""Writes the policy cases: one JSON file per case, named <reason>__allow_*.json or <reason>__reject_*.json.

Every case states its expectation here, by hand; nothing is computed by custodian. Session ids come from
Go's json.Marshal layout (PROTOCOL.md section 9) and Keccak-256 (eth-utils), as ClearNode computes them.

    .venv/bin/python3 Tests/PolicyCases/generate.py      (scripts/setup --python makes .venv)
"""
import json
import pathlib

from eth_utils import keccak

HERE = pathlib.Path(__file__).resolve().parent
A = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"  # the agent
B = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
C = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
T0 = 1733000000000
CASES = {}


def policy(methods=("create_app_session", "submit_app_state", "close_app_session"), max_age_ms=30000,
           max_future_ms=5000, applications=("chess",), protocols=("NitroRPC/0.2", "NitroRPC/0.4"),
           max_participants=8, usdc=None, counterparties=(), velocity='{ usdc = "5000" }', window_s=86400,
           enforcement=""):
    asset = {"max_session_total": "10000", "max_own_funding": "1000", "max_allocation": "10000",
             "max_own_loss": "1000"}
    asset.update(usdc or {})
    q = lambda items: "[" + ", ".join(json.dumps(i) for i in items) + "]"
    text = f"""version = 1

[requests]
methods = {q(methods)}
max_age_ms = {max_age_ms}
max_future_ms = {max_future_ms}

[sessions]
applications = {q(applications)}
protocols = {q(protocols)}
max_participants = {max_participants}

[assets.usdc]
decimals = 6
""" + "".join(f'{k} = "{v}"\n' for k, v in asset.items()) + """
[assets.eth]
decimals = 18
max_allocation = "100"

[counterparties]
allow = """ + q(counterparties) + f"""

[velocity]
window_s = {window_s}
max_own_loss = {velocity}
"""
    return text + enforcement


def definition(application="chess", protocol="NitroRPC/0.4", participants=(A, B), weights=(50, 50), quorum=100,
               nonce=T0):
    d = {"application": application, "protocol": protocol, "participants": list(participants),
         "weights": list(weights), "quorum": quorum, "challenge": 86400, "nonce": nonce}
    return d


def session_id(d):
    go = json.dumps({k: d.get(k, "") for k in
                     ["application", "protocol", "participants", "weights", "quorum", "challenge", "nonce"]},
                    separators=(",", ":"), ensure_ascii=False)
    return "0x" + keccak(go.encode()).hex()


def alloc(participant, amount, asset="usdc"):
    return {"participant": participant, "asset": asset, "amount": amount}


def text(request_id, method, params, ts):
    return '{"req":' + json.dumps([request_id, method, params, ts], separators=(",", ":")) + ',"sig":[]}'


def create(d=None, allocations=None, ts=T0, request_id=1):
    d = d or definition()
    allocations = allocations if allocations is not None else [alloc(A, "100"), alloc(B, "50")]
    return {"message": text(request_id, "create_app_session", {"definition": d, "allocations": allocations}, ts),
            "now_ms": ts + 1000}


def close(allocations, d=None, ts=T0 + 60000, request_id=2, extra=None, now=None):
    params = {"app_session_id": session_id(d or definition()), "allocations": allocations}
    params.update(extra or {})
    return {"message": text(request_id, "close_app_session", params, ts), "now_ms": now or ts + 1000}


def submit(allocations, intent="operate", version=2, d=None, ts=T0 + 30000, request_id=3):
    params = {"app_session_id": session_id(d or definition())}
    if intent is not None:
        params["intent"] = intent
    if version is not None:
        params["version"] = version
    params["allocations"] = allocations
    return {"message": text(request_id, "submit_app_state", params, ts), "now_ms": ts + 1000}


def case(name, comment, final, expect, reason=None, setup=(), policy_toml=None, warnings=(), figures=None):
    assert expect in ("allow", "reject") and (reason is None) == (expect == "allow"), name
    body = {"comment": comment, "agent_address": A, "policy_toml": policy_toml or policy(), "setup": list(setup),
            "message": final["message"], "now_ms": final["now_ms"], "expect": expect}
    if reason:
        body["reason"] = reason
    if warnings:
        body["warnings"] = list(warnings)
    if figures:
        body["figures"] = figures
    assert name not in CASES, name
    CASES[name] = body


S0 = [create()]
GOOD = [alloc(A, "75.5"), alloc(B, "74.5")]

# payload.*
case("payload.malformed__reject_amount_missing", "B's allocation has no amount key.",
     close([alloc(A, "150"), {"participant": B, "asset": "usdc"}]), "reject", "payload.malformed", S0)
case("payload.malformed__allow_amount_zero", "The nearest well-formed close: B's amount is \"0\".",
     close([alloc(A, "150"), alloc(B, "0")]), "allow", setup=S0)
dup = close(GOOD)
dup["message"] = dup["message"].replace('"amount":"74.5"}', '"amount":"74.5","amount":"74.5"}')
case("payload.duplicate_key__reject_amount_twice", "B's amount key appears twice (same value): still ambiguous.",
     dup, "reject", "payload.duplicate_key", S0)
case("payload.duplicate_key__allow_once", "Each key once.", close(GOOD), "allow", setup=S0)
case("payload.unknown_field__reject_intent_on_close", "close_app_session defines no intent.",
     close(GOOD, extra={"intent": "operate"}), "reject", "payload.unknown_field", S0)
case("payload.unknown_field__allow_session_data", "session_data is defined for close.",
     close(GOOD, extra={"session_data": "{\"winner\":\"A\"}"}), "allow", setup=S0)
case("payload.bad_amount__reject_leading_zero", "\"075.5\" has a leading zero.",
     close([alloc(A, "075.5"), alloc(B, "74.5")]), "reject", "payload.bad_amount", S0)
case("payload.bad_amount__allow_trailing_zero", "\"75.50\" is in the grammar (and equals 75.5).",
     close([alloc(A, "75.50"), alloc(B, "74.5")]), "allow", setup=S0)
case("payload.bad_address__reject_lower_case", "B's address in lower case is not its EIP-55 form.",
     close([alloc(A, "75.5"), alloc(B.lower(), "74.5")]), "reject", "payload.bad_address", S0)
case("payload.bad_address__allow_checksummed", "B's address in EIP-55 form.", close(GOOD), "allow", setup=S0)
case("payload.stale__reject_one_ms_too_old", "max_age_ms = 30000; the request is 30001 ms old.",
     close(GOOD, now=T0 + 60000 + 30001), "reject", "payload.stale", S0,
     figures={"max_age_ms": "30000"})
case("payload.stale__allow_exactly_max_age", "Exactly 30000 ms old.", close(GOOD, now=T0 + 60000 + 30000),
     "allow", setup=S0)
case("payload.future__reject_one_ms_too_far", "max_future_ms = 5000; the timestamp is 5001 ms ahead.",
     close(GOOD, now=T0 + 60000 - 5001), "reject", "payload.future", S0)
case("payload.future__allow_exactly_max_future", "Exactly 5000 ms ahead.", close(GOOD, now=T0 + 60000 - 5000),
     "allow", setup=S0)
no_close = policy(methods=("create_app_session", "submit_app_state"))
case("payload.method_not_allowed__reject_close_not_listed", "The policy lists create and submit only.",
     close(GOOD), "reject", "payload.method_not_allowed", S0, policy_toml=no_close)
transfer = {"message": '{"req":[9,"transfer",{"destination":"' + B + '","allocations":[]},' + str(T0) + '],"sig":[]}',
            "now_ms": T0 + 1000}
case("payload.method_not_allowed__reject_transfer", "custodian never signs transfer.", transfer, "reject",
     "payload.method_not_allowed")
case("payload.method_not_allowed__allow_close_listed", "The default methods list close.", close(GOOD), "allow",
     setup=S0)

# policy.* (close)
case("policy.session_unknown__reject_other_nonce", "A close for the same definition with nonce + 1: never created.",
     close(GOOD, d=definition(nonce=T0 + 1)), "reject", "policy.session_unknown", S0)
case("policy.session_unknown__allow_tracked", "The session whose creation was signed.", close(GOOD), "allow",
     setup=S0)
S_CLOSED = S0 + [close(GOOD)]
case("policy.session_closed__reject_other_allocations", "Closed with 75.5/74.5; now 0/150 is asked.",
     close([alloc(A, "0"), alloc(B, "150")], ts=T0 + 70000, request_id=7), "reject", "policy.session_closed",
     S_CLOSED)
case("policy.session_closed__allow_identical_retry", "The same allocations again, new id and timestamp: a retry.",
     close(GOOD, ts=T0 + 70000, request_id=7), "allow", setup=S_CLOSED)
case("policy.sum_mismatch__reject_one_unit_short", "75.5 + 74.499999 = 149.999999 of 150 (decimals 6).",
     close([alloc(A, "75.5"), alloc(B, "74.499999")]), "reject", "policy.sum_mismatch", S0,
     figures={"asset": "usdc", "expected": "150", "got": "149.999999"})
case("policy.sum_mismatch__reject_one_unit_over", "75.5 + 74.500001 = 150.000001 of 150.",
     close([alloc(A, "75.5"), alloc(B, "74.500001")]), "reject", "policy.sum_mismatch", S0)
case("policy.sum_mismatch__allow_exact", "75.5 + 74.5 = 150.", close(GOOD), "allow", setup=S0)
case("policy.participant_unknown__reject_stranger", "25 of the 150 go to C, who is not a participant.",
     close([alloc(A, "75"), alloc(B, "50"), alloc(C, "25")]), "reject", "policy.participant_unknown", S0)
case("policy.participant_unknown__allow_participants_only", "Only A and B.",
     close([alloc(A, "75"), alloc(B, "75")]), "allow", setup=S0)
case("policy.participant_missing__reject_a_omitted", "Only B is listed: A's sub-balance would be stranded.",
     close([alloc(B, "150")]), "reject", "policy.participant_missing", S0)
case("policy.participant_missing__allow_zero_entry", "A is listed with 0.",
     close([alloc(A, "0"), alloc(B, "150")]), "allow", setup=S0)
case("policy.duplicate_allocation__reject_b_twice", "B twice for usdc (75 + 75); the sums match.",
     close([alloc(A, "0"), alloc(B, "75"), alloc(B, "75")]), "reject", "policy.duplicate_allocation", S0)
case("policy.duplicate_allocation__allow_once", "B once with 150.", close([alloc(A, "0"), alloc(B, "150")]),
     "allow", setup=S0)
case("policy.asset_not_allowed__reject_case_variant", "A zero entry in \"USDC\", which the policy does not list.",
     close(GOOD + [alloc(A, "0", "USDC")]), "reject", "policy.asset_not_allowed", S0)
case("policy.asset_not_allowed__allow_listed_asset_zero", "A zero entry in eth, which the policy lists.",
     close(GOOD + [alloc(A, "0", "eth")]), "allow", setup=S0)
case("policy.precision__reject_seven_digits", "75.5000001 has 7 fractional digits; usdc has 6.",
     close([alloc(A, "75.5000001"), alloc(B, "74.4999999")]), "reject", "policy.precision", S0)
case("policy.precision__allow_six_digits", "75.500001 has 6.",
     close([alloc(A, "75.500001"), alloc(B, "74.499999")]), "allow", setup=S0)
cap = policy(usdc={"max_allocation": "100"})
case("policy.cap_exceeded__reject_one_unit_over", "max_allocation 100; A gets 100.000001.",
     close([alloc(A, "100.000001"), alloc(B, "49.999999")]), "reject", "policy.cap_exceeded", S0, policy_toml=cap,
     figures={"amount": "100.000001", "cap": "100"})
case("policy.cap_exceeded__allow_at_cap", "A gets exactly 100.", close([alloc(A, "100"), alloc(B, "50")]), "allow",
     setup=S0, policy_toml=cap)
loss = policy(usdc={"max_own_loss": "30"})
case("policy.own_loss_exceeded__reject_one_unit_over", "A funded 100 and gets 69.999999: a loss of 30.000001 > 30.",
     close([alloc(A, "69.999999"), alloc(B, "80.000001")]), "reject", "policy.own_loss_exceeded", S0,
     policy_toml=loss, figures={"loss": "30.000001", "cap": "30"})
case("policy.own_loss_exceeded__allow_at_cap", "A gets 70: a loss of exactly 30.",
     close([alloc(A, "70"), alloc(B, "80")]), "allow", setup=S0, policy_toml=loss)
case("policy.own_loss_exceeded__reject_operate_state", "An operate state in which A would hold 69.999999.",
     submit([alloc(A, "69.999999"), alloc(B, "80.000001")]), "reject", "policy.own_loss_exceeded", S0,
     policy_toml=loss)
fund = policy(usdc={"max_own_funding": "100"})
case("policy.funding_exceeded__reject_own_funding", "max_own_funding 100; A funds 100.000001.",
     create(allocations=[alloc(A, "100.000001"), alloc(B, "50")]), "reject", "policy.funding_exceeded",
     policy_toml=fund)
case("policy.funding_exceeded__allow_own_funding_at_cap", "A funds exactly 100.", create(), "allow",
     policy_toml=fund)
total = policy(usdc={"max_session_total": "150"})
case("policy.funding_exceeded__reject_session_total", "max_session_total 150; 100 + 50.000001.",
     create(allocations=[alloc(A, "100"), alloc(B, "50.000001")]), "reject", "policy.funding_exceeded",
     policy_toml=total)
case("policy.funding_exceeded__allow_session_total_at_cap", "100 + 50 = 150.", create(), "allow", policy_toml=total)
case("policy.funding_exceeded__reject_deposit", "max_own_funding 100: A deposits 0.000001 more.",
     submit([alloc(A, "100.000001"), alloc(B, "50")], intent="deposit"), "reject", "policy.funding_exceeded", S0,
     policy_toml=fund)
case("policy.counterparty_not_allowed__reject_unlisted", "[counterparties] allow lists C only; B is the other participant.",
     create(), "reject", "policy.counterparty_not_allowed", policy_toml=policy(counterparties=(C,)))
case("policy.counterparty_not_allowed__allow_listed", "[counterparties] allow lists B.", create(), "allow",
     policy_toml=policy(counterparties=(B,)))
case("policy.version_conflict__reject_skipped_version", "Current version 1; version 3 skips one.",
     submit(GOOD, version=3), "reject", "policy.version_conflict", S0, figures={"expected": "2", "got": "3"})
case("policy.version_conflict__reject_same_version_other_state", "Version 2 signed as 80/70; now 2 as 75.5/74.5.",
     submit(GOOD, version=2, ts=T0 + 40000, request_id=4), "reject", "policy.version_conflict",
     S0 + [submit([alloc(A, "80"), alloc(B, "70")])])
case("policy.version_conflict__allow_next_version", "Version 2 = current + 1.", submit(GOOD, version=2), "allow",
     setup=S0)
D2 = definition(nonce=T0 + 1)
vel = policy(velocity='{ usdc = "40" }')
S_VEL = S0 + [close([alloc(A, "80"), alloc(B, "70")]), create(D2, ts=T0 + 61000, request_id=5)]
case("policy.velocity_exceeded__reject_one_unit_over", "Closes realize losses of 20 then 20.000001: 40.000001 > 40.",
     close([alloc(A, "79.999999"), alloc(B, "70.000001")], d=D2, ts=T0 + 62000, request_id=6), "reject",
     "policy.velocity_exceeded", S_VEL, policy_toml=vel)
case("policy.velocity_exceeded__allow_at_cap", "Losses of 20 then 20: exactly 40.",
     close([alloc(A, "80"), alloc(B, "70")], d=D2, ts=T0 + 62000, request_id=6), "allow", setup=S_VEL,
     policy_toml=vel)
case("policy.velocity_exceeded__allow_outside_window", "window_s 3600: the first loss is older than the window.",
     close([alloc(A, "60"), alloc(B, "90")], d=D2, ts=T0 + 61000 + 3600 * 1000, request_id=6), "allow",
     setup=[create(), close([alloc(A, "80"), alloc(B, "70")]), create(D2, ts=T0 + 61000, request_id=5)],
     policy_toml=policy(velocity='{ usdc = "40" }', window_s=3600))
# Committed loss (CONTRACT §5): every signed state counts, when it is signed; a close adds only what it raises.
S_OP = S0 + [submit([alloc(A, "80"), alloc(B, "70")]), create(D2, ts=T0 + 61000, request_id=5)]
case("policy.velocity_exceeded__reject_operate_route",
     "An operate committed a loss of 20; an operate in a second session commits 20.000001 more: 40.000001 > 40.",
     submit([alloc(A, "79.999999"), alloc(B, "70.000001")], d=D2, ts=T0 + 62000, request_id=6), "reject",
     "policy.velocity_exceeded", S_OP, policy_toml=vel, figures={"loss": "20.000001", "prior_losses": "20"})
case("policy.velocity_exceeded__allow_operate_at_cap", "Operates committing 20 then 20: exactly 40.",
     submit([alloc(A, "80"), alloc(B, "70")], d=D2, ts=T0 + 62000, request_id=6), "allow", setup=S_OP,
     policy_toml=vel)
S_FULL = S_OP + [submit([alloc(A, "80"), alloc(B, "70")], d=D2, ts=T0 + 62000, request_id=6)]
case("policy.velocity_exceeded__allow_close_already_committed",
     "The window is full (40), but this close loses the 20 its operate already committed: it adds nothing.",
     close([alloc(A, "80"), alloc(B, "70")], ts=T0 + 63000, request_id=7), "allow", setup=S_FULL, policy_toml=vel)
case("policy.velocity_exceeded__reject_close_raises_committed",
     "The window is full (40); this close loses 0.000001 more than its operate committed.",
     close([alloc(A, "79.999999"), alloc(B, "70.000001")], ts=T0 + 63000, request_id=7), "reject",
     "policy.velocity_exceeded", S_FULL, policy_toml=vel, figures={"loss": "0.000001", "prior_losses": "40"})
S_WD = S0 + [submit([alloc(A, "70"), alloc(B, "50")], intent="withdraw")]
case("submit.withdraw__allow_own_withdrawal_commits_nothing",
     "A withdrew 30 to itself: funding at risk 70; a close paying A 70 commits no loss, even with a 0 velocity cap.",
     close([alloc(A, "70"), alloc(B, "50")], ts=T0 + 63000, request_id=7), "allow", setup=S_WD,
     policy_toml=policy(velocity='{ usdc = "0" }'))
case("submit.withdraw__reject_paid_to_other_commits",
     "B withdrew 50 (paid to B, not to A); A's 100 at risk: a close paying A 99.999999 commits a loss over a 0 cap.",
     close([alloc(A, "99.999999"), alloc(B, "0.000001")], ts=T0 + 63000, request_id=7), "reject",
     "policy.velocity_exceeded", S0 + [submit([alloc(A, "100"), alloc(B, "0")], intent="withdraw")],
     policy_toml=policy(velocity='{ usdc = "0" }'))

# Exposure: this key's funding at risk over all its open sessions (max_open_funding).
expo = policy(usdc={"max_open_funding": "150"})
case("policy.exposure_exceeded__reject_one_unit_over", "100 at risk in one session; a create funding 50.000001 more.",
     create(D2, allocations=[alloc(A, "50.000001"), alloc(B, "0")], ts=T0 + 61000, request_id=5), "reject",
     "policy.exposure_exceeded", S0, policy_toml=expo, figures={"open_funding": "150.000001", "cap": "150"})
case("policy.exposure_exceeded__allow_at_cap", "100 + 50: exactly 150.",
     create(D2, allocations=[alloc(A, "50"), alloc(B, "0")], ts=T0 + 61000, request_id=5), "allow", setup=S0,
     policy_toml=expo)
case("policy.exposure_exceeded__allow_after_close", "The first session is closed: nothing of it is at risk.",
     create(D2, allocations=[alloc(A, "100"), alloc(B, "0")], ts=T0 + 61000, request_id=5), "allow",
     setup=S0 + [close(GOOD)], policy_toml=policy(usdc={"max_open_funding": "100"}))
S_EXPO = S0 + [create(D2, allocations=[alloc(A, "50"), alloc(B, "0")], ts=T0 + 61000, request_id=5)]
case("policy.exposure_exceeded__reject_deposit", "150 at risk (the cap); A deposits 0.000001 more.",
     submit([alloc(A, "50.000001"), alloc(B, "0")], intent="deposit", d=D2, ts=T0 + 62000, request_id=6), "reject",
     "policy.exposure_exceeded", S_EXPO, policy_toml=expo)
case("policy.exposure_exceeded__allow_withdraw_frees", "A withdraws 10 to itself, then deposits 10: back at 150.",
     submit([alloc(A, "50"), alloc(B, "0")], intent="deposit", d=D2, version=3, ts=T0 + 63000, request_id=7),
     "allow", setup=S_EXPO + [submit([alloc(A, "40"), alloc(B, "0")], intent="withdraw", d=D2, ts=T0 + 62000,
                                     request_id=6)], policy_toml=expo)

# A close ClearNode refuses: no allocations ("missing required parameters").
ZERO = [create(allocations=[alloc(A, "0"), alloc(B, "0")])]
case("payload.malformed__reject_close_without_allocations", "allocations [] on a session with a zero total.",
     close([]), "reject", "payload.malformed", ZERO)
case("payload.malformed__allow_close_zero_total_listed", "The same close listing both participants at 0.",
     close([alloc(A, "0"), alloc(B, "0")]), "allow", setup=ZERO)
case("policy.application_not_allowed__reject_application", "application poker; the policy allows chess.",
     create(definition(application="poker")), "reject", "policy.application_not_allowed")
case("policy.application_not_allowed__reject_protocol", "protocol NitroRPC/0.3 is not allowed.",
     create(definition(protocol="NitroRPC/0.3")), "reject", "policy.application_not_allowed")
case("policy.application_not_allowed__allow_chess", "application chess.", create(), "allow")
case("policy.not_participant__reject_absent", "The definition's participants are B and C.",
     create(definition(participants=(B, C)), allocations=[alloc(B, "50"), alloc(C, "50")]), "reject",
     "policy.not_participant")
case("policy.not_participant__allow_present", "A is a participant.", create(), "allow")
case("policy.definition_invalid__reject_nonce_zero", "nonce 0: ClearNode refuses it.",
     create(definition(nonce=0)), "reject", "policy.definition_invalid")
case("policy.definition_invalid__allow_nonce_one", "nonce 1.", create(definition(nonce=1)), "allow")
nine = [A, B, C] + ["0x" + format(i, "040x") for i in range(1, 7)]
case("policy.definition_invalid__reject_nine_participants", "max_participants 8; nine are listed.",
     create(definition(participants=nine, weights=[100] + [0] * 8), allocations=[alloc(A, "1")]), "reject",
     "policy.definition_invalid")
case("policy.definition_invalid__allow_eight_participants", "Exactly eight.",
     create(definition(participants=nine[:8], weights=[100] + [0] * 7), allocations=[alloc(A, "1")]), "allow")
case("policy.definition_invalid__reject_quorum_above_weights", "quorum 101 > 50 + 50.",
     create(definition(quorum=101)), "reject", "policy.definition_invalid")
case("policy.session_exists__reject_other_allocations", "The same definition again, with B funding 49.",
     create(allocations=[alloc(A, "100"), alloc(B, "49")], request_id=8), "reject", "policy.session_exists", S0)
case("policy.session_exists__allow_identical_retry", "The same create again, new request id: a retry.",
     create(request_id=8), "allow", setup=S0)
case("policy.quorum_without_us__reject_quorum_50", "Weights 50/50, quorum 50: B alone reaches it.",
     create(definition(quorum=50)), "reject", "policy.quorum_without_us")
case("policy.quorum_without_us__allow_quorum_51", "Quorum 51: B alone (50) does not reach it.",
     create(definition(quorum=51)), "allow")

# NitroRPC/0.4 intents and 0.2
case("submit.deposit__allow", "A deposits 20: the session total becomes 170.",
     submit([alloc(A, "120"), alloc(B, "50")], intent="deposit"), "allow", setup=S0)
case("submit.deposit__allow_close_after", "After a deposit of 20, the close must pay out 170.",
     close([alloc(A, "100"), alloc(B, "70")]), "allow", setup=S0 + [submit([alloc(A, "120"), alloc(B, "50")],
                                                                         intent="deposit")])
case("submit.deposit__reject_close_at_old_total", "After a deposit of 20, a close paying out 150.",
     close([alloc(A, "80"), alloc(B, "70")]), "reject", "policy.sum_mismatch",
     S0 + [submit([alloc(A, "120"), alloc(B, "50")], intent="deposit")])
case("submit.deposit__reject_decrease", "A deposit in which B's allocation falls.",
     submit([alloc(A, "130"), alloc(B, "40")], intent="deposit"), "reject", "policy.sum_mismatch", S0)
case("submit.withdraw__allow", "A withdraws 40: the total becomes 110.",
     submit([alloc(A, "60"), alloc(B, "50")], intent="withdraw"), "allow", setup=S0)
case("submit.withdraw__allow_close_after", "After A withdrew 40, a close at 110 in which A gets 0: loss 60.",
     close([alloc(A, "0"), alloc(B, "110")]), "allow",
     setup=S0 + [submit([alloc(A, "60"), alloc(B, "50")], intent="withdraw")])
case("submit.withdraw__reject_increase", "A withdraw in which B's allocation grows.",
     submit([alloc(A, "40"), alloc(B, "60")], intent="withdraw"), "reject", "policy.sum_mismatch", S0)
case("submit.operate__reject_sum", "An operate state whose usdc sums to 151.",
     submit([alloc(A, "80"), alloc(B, "71")]), "reject", "policy.sum_mismatch", S0)
case("submit.operate__reject_missing_version", "NitroRPC/0.4 requires version.",
     submit(GOOD, version=None), "reject", "payload.malformed", S0)
case("submit.operate__reject_missing_intent", "NitroRPC/0.4 requires intent.",
     submit(GOOD, intent=None), "reject", "payload.malformed", S0)
D02 = definition(protocol="NitroRPC/0.2")
case("submit.v02__allow_without_intent", "NitroRPC/0.2: no intent, no version.",
     submit(GOOD, intent=None, version=None, d=D02), "allow", setup=[create(D02)])
case("submit.v02__reject_intent", "NitroRPC/0.2 defines no intent.",
     submit(GOOD, version=None, d=D02), "reject", "payload.unknown_field", [create(D02)])

# [enforcement]
warn_cap = policy(usdc={"max_allocation": "100"}, enforcement='\n[enforcement]\nwarn = ["policy.cap_exceeded"]\n')
case("enforcement.warn__allow_cap_exceeded_warned", "cap_exceeded only warns: signed, the warning recorded.",
     close([alloc(A, "100.000001"), alloc(B, "49.999999")]), "allow", setup=S0, policy_toml=warn_cap,
     warnings=["policy.cap_exceeded"])
case("enforcement.warn__reject_sum_mismatch_enforced", "Other rules still refuse.",
     close([alloc(A, "100.000001"), alloc(B, "49.999998")]), "reject", "policy.sum_mismatch", S0,
     policy_toml=warn_cap)
warn_all = policy(enforcement='\n[enforcement]\nmode = "warn"\n')
case("enforcement.warn_mode__allow_sum_mismatch_warned", "mode = warn: a sum mismatch is signed and recorded.",
     close([alloc(A, "75.5"), alloc(B, "74.499999")]), "allow", setup=S0, policy_toml=warn_all,
     warnings=["policy.sum_mismatch"])
case("enforcement.warn_mode__reject_session_unknown", "mode = warn never signs for an unknown session.",
     close(GOOD, d=definition(nonce=T0 + 1)), "reject", "policy.session_unknown", S0, policy_toml=warn_all)
case("enforcement.warn_mode__reject_duplicate_key", "mode = warn never signs an ambiguous payload.", dup,
     "reject", "payload.duplicate_key", S0, policy_toml=warn_all)


# Nitrolite v1 (PROTOCOL-v1.md): frames [1, id, method, payload, ts], sessions whose id is the Keccak-256 of the
# ABI-encoded definition (eth-abi here, as nitronode's Go packer), states that are full snapshots, a close that must
# equal the current state. One policy file for both protocols: the methods by their protocol's names.
V0_METHODS = ("create_app_session", "submit_app_state", "close_app_session")
V1_METHODS = ("app_sessions.v1.create_app_session", "app_sessions.v1.submit_app_state",
              "app_sessions.v1.submit_deposit_state")
BOTH = V0_METHODS + V1_METHODS


def v1_definition(application="chess", participants=(A, B), weights=(1, 1), quorum=2, nonce=T0):
    return {"application_id": application,
            "participants": [{"wallet_address": p, "signature_weight": w} for p, w in zip(participants, weights)],
            "quorum": quorum, "nonce": str(nonce)}


def v1_session_id(d):
    from eth_abi import encode
    values = [d["application_id"], [(p["wallet_address"], p["signature_weight"]) for p in d["participants"]],
              d["quorum"], int(d["nonce"])]
    return "0x" + keccak(encode(["string", "(address,uint8)[]", "uint8", "uint64"], values)).hex()


def v1_frame(method, payload, ts, request_id):
    return json.dumps([1, request_id, method, payload, ts], separators=(",", ":"))


def v1_create(d=None, ts=T0, request_id=1):
    payload = {"definition": d or v1_definition(), "session_data": "", "quorum_sigs": []}
    return {"message": v1_frame("app_sessions.v1.create_app_session", payload, ts, request_id), "now_ms": ts + 1000}


def v1_update(intent, version, allocations, d=None, ts=None, request_id=None, session_data=""):
    ts = ts if ts is not None else T0 + 10000 * version
    update = {"app_session_id": v1_session_id(d or v1_definition()), "intent": intent, "version": str(version),
              "allocations": allocations, "session_data": session_data}
    payload = {"app_state_update": update, "quorum_sigs": []}
    method = "app_sessions.v1.submit_app_state"
    if intent == 1:
        method = "app_sessions.v1.submit_deposit_state"
        payload["user_state"] = {"note": "the depositor's channel state: passed through, not read"}
    return {"message": v1_frame(method, payload, ts, request_id or version), "now_ms": ts + 1000}


V1_POLICY = policy(methods=BOTH)
# Created (version 1); A deposits 100 (2); B deposits 50 (3); an operate moves 30 to B (4).
V1_FUNDED = [v1_create(), v1_update(1, 2, [alloc(A, "100")]), v1_update(1, 3, [alloc(A, "100"), alloc(B, "50")])]
V1_PLAYED = V1_FUNDED + [v1_update(0, 4, [alloc(A, "70"), alloc(B, "80")])]


def v1_case(name, comment, final, expect, reason=None, setup=(), policy_toml=None, figures=None):
    case(name, comment, final, expect, reason, setup, policy_toml or V1_POLICY, figures=figures)


v1_case("policy.close_not_current__reject_redistributes",
        "A v1 close that moves 10 usdc from A to B: the sums hold, but a close must equal the current state "
        "(nitronode refuses any other; value moves in an operate).",
        v1_update(3, 5, [alloc(A, "60"), alloc(B, "90")]), "reject", "policy.close_not_current", V1_PLAYED,
        figures={"current": "70", "got": "60"})
v1_case("policy.close_not_current__allow_equal", "The close lists the current state exactly.",
        v1_update(3, 5, [alloc(A, "70"), alloc(B, "80")]), "allow", setup=V1_PLAYED)
v1_case("v1.close__allow_zero_pair_listed", "A zero pair may be listed in a close (or left out).",
        v1_update(3, 5, [alloc(A, "70"), alloc(B, "80"), alloc(A, "0", "eth")]), "allow", setup=V1_PLAYED)
v1_case("v1.close__reject_wrong_version", "A close at version 6 while the session is at 4.",
        v1_update(3, 6, [alloc(A, "70"), alloc(B, "80")]), "reject", "policy.version_conflict", V1_PLAYED)
v1_case("v1.version__reject_conflicting_operate",
        "Version 4 was signed as A 70 / B 80; another content for version 4 would be a second valid state.",
        v1_update(0, 4, [alloc(A, "60"), alloc(B, "90")], request_id=40), "reject", "policy.version_conflict",
        V1_PLAYED)
v1_case("v1.version__allow_identical_retry", "The very state signed for version 4, asked again after a timeout.",
        v1_update(0, 4, [alloc(A, "70"), alloc(B, "80")], request_id=41), "allow", setup=V1_PLAYED)
v1_case("v1.version__reject_reordered_retry",
        "Version 4's allocations in another order: another hash, so another signature for one version.",
        v1_update(0, 4, [alloc(B, "80"), alloc(A, "70")], request_id=42), "reject", "policy.version_conflict",
        V1_PLAYED)
v1_case("v1.operate__reject_own_loss",
        "An operate that leaves A (who put in 100) with nothing, under max_own_loss 50.",
        v1_update(0, 4, [alloc(A, "0"), alloc(B, "150")]), "reject", "policy.own_loss_exceeded", V1_FUNDED,
        policy_toml=policy(methods=BOTH, usdc={"max_own_loss": "50"}))
v1_case("v1.operate__allow_own_loss_at_cap", "A loses exactly its max_own_loss of 50.",
        v1_update(0, 4, [alloc(A, "50"), alloc(B, "100")]), "allow", setup=V1_FUNDED,
        policy_toml=policy(methods=BOTH, usdc={"max_own_loss": "50"}))
v1_case("v1.operate__reject_sum", "An operate that pays out 149 of the session's 150 usdc.",
        v1_update(0, 4, [alloc(A, "70"), alloc(B, "79")]), "reject", "policy.sum_mismatch", V1_FUNDED)
v1_case("v1.operate__reject_nonzero_pair_omitted", "B holds 50 usdc; an operate must list B (nitronode's rule too).",
        v1_update(0, 4, [alloc(A, "150")]), "reject", "policy.participant_missing", V1_FUNDED)
v1_case("v1.operate__allow_zero_pair_omitted", "B holds nothing yet: the operate may leave B out.",
        v1_update(0, 3, [alloc(A, "100")]), "allow", setup=V1_FUNDED[:2])
v1_case("v1.operate__reject_stranger", "An operate that pays C, who is not a participant.",
        v1_update(0, 4, [alloc(A, "70"), alloc(B, "50"), alloc(C, "30")]), "reject", "policy.participant_unknown",
        V1_FUNDED)
v1_case("v1.deposit__reject_two_assets", "A deposit commits one asset: raising usdc and eth at once is not one.",
        v1_update(1, 4, [alloc(A, "110"), alloc(B, "50"), alloc(A, "1", "eth")]), "reject", "policy.sum_mismatch",
        V1_FUNDED)
v1_case("v1.deposit__reject_zero_entry_for_new_pair",
        "A deposit that lists B with 0 usdc while B holds none (nitronode: zero allocation with no existing balance).",
        v1_update(1, 2, [alloc(A, "100"), alloc(B, "0")]), "reject", "policy.sum_mismatch", V1_FUNDED[:1])
v1_case("v1.deposit__reject_decrease", "A deposit that lowers B's 50 to 40.",
        v1_update(1, 4, [alloc(A, "120"), alloc(B, "40")]), "reject", "policy.sum_mismatch", V1_FUNDED)
v1_case("v1.deposit__reject_above_max_own_funding", "A deposits 1001 usdc in all; max_own_funding is 1000.",
        v1_update(1, 4, [alloc(A, "1001"), alloc(B, "50")]), "reject", "policy.funding_exceeded", V1_FUNDED)
v1_case("v1.deposit__allow", "A deposits 20 more usdc.", v1_update(1, 4, [alloc(A, "120"), alloc(B, "50")]),
        "allow", setup=V1_FUNDED)
v1_case("v1.withdraw__allow", "A takes 30 of its 100 out.", v1_update(2, 4, [alloc(A, "70"), alloc(B, "50")]),
        "allow", setup=V1_FUNDED)
v1_case("v1.withdraw__reject_increase", "A withdraw that raises B.",
        v1_update(2, 4, [alloc(A, "70"), alloc(B, "80")]), "reject", "policy.sum_mismatch", V1_FUNDED)
v1_case("v1.create__reject_quorum_without_us", "B's weight 2 reaches the quorum of 2 alone.",
        v1_create(v1_definition(weights=(1, 2))), "reject", "policy.quorum_without_us")
v1_case("v1.create__reject_quorum_zero", "nitronode refuses a quorum of 0.",
        v1_create(v1_definition(quorum=0)), "reject", "policy.definition_invalid")
v1_case("v1.create__reject_not_participant", "A definition of B and C only.",
        v1_create(v1_definition(participants=(B, C))), "reject", "policy.not_participant")
v1_case("v1.create__reject_application", "application_id 'poker' is not in [sessions] applications.",
        v1_create(v1_definition(application="poker")), "reject", "policy.application_not_allowed")
v1_case("v1.create__allow", "A two-party chess session, weights 1 and 1, quorum 2.", v1_create(), "allow")
v1_case("v1.method__reject_not_listed", "The policy lists the v0 methods only.", v1_create(), "reject",
        "payload.method_not_allowed", policy_toml=policy())
v1_case("v1.method__reject_rebalance", "Intent 4 (rebalance) moves value between sessions: no policy covers it.",
        v1_update(4, 4, [alloc(A, "100"), alloc(B, "50")]), "reject", "payload.method_not_allowed", V1_FUNDED)
v1_case("v1.method__reject_v0_submit_for_v1_session",
        "A v0 submit_app_state naming a v1 session: ClearNode holds no such session.",
        {"message": text(9, "submit_app_state", {"app_session_id": v1_session_id(v1_definition()), "intent": "operate",
                                                  "version": 4, "allocations": [alloc(A, "70"), alloc(B, "80")]},
                         T0 + 40000), "now_ms": T0 + 41000}, "reject", "policy.session_unknown", V1_FUNDED)
V0_LOSS = [create(), close([alloc(A, "0"), alloc(B, "150")])]  # A loses its 100 usdc in a v0 session
v1_case("v1.velocity__reject_after_v0_loss",
        "One window for both protocols: A lost 100 in a v0 session; a v1 operate losing 901 passes the cap of 1000.",
        v1_update(0, 3, [alloc(A, "99"), alloc(B, "901")], ts=T0 + 90000), "reject", "policy.velocity_exceeded",
        V0_LOSS + [v1_create(), v1_update(1, 2, [alloc(A, "1000")], ts=T0 + 80000)],
        policy_toml=policy(methods=BOTH, velocity='{ usdc = "1000" }'), figures={"prior_losses": "100"})
v1_case("v1.velocity__allow_at_cap_after_v0_loss", "The same with a loss of 900: 100 + 900 is the cap.",
        v1_update(0, 3, [alloc(A, "100"), alloc(B, "900")], ts=T0 + 90000), "allow",
        setup=V0_LOSS + [v1_create(), v1_update(1, 2, [alloc(A, "1000")], ts=T0 + 80000)],
        policy_toml=policy(methods=BOTH, velocity='{ usdc = "1000" }'))


# Worked examples of the files in policies/: the policy is the file itself.
EXAMPLES = {}


def example(policy_stem, name, comment, final, expect, reason=None, setup=()):
    body = {"comment": comment, "agent_address": A, "setup": list(setup), "message": final["message"],
            "now_ms": final["now_ms"], "expect": expect}
    if reason:
        body["reason"] = reason
    EXAMPLES[(policy_stem, name)] = body


example("default", "allow_exact_sum", "75.5 + 74.5 = 150, the session's total.", close(GOOD), "allow", setup=S0)
example("default", "refuse_one_unit_short", "75.5 + 74.499999 = 149.999999: one smallest unit short.",
        close([alloc(A, "75.5"), alloc(B, "74.499999")]), "reject", "policy.sum_mismatch", S0)
example("default", "allow_v1_close_current", "A v1 close equal to the current state: A 70, B 80.",
        v1_update(3, 5, [alloc(A, "70"), alloc(B, "80")]), "allow", setup=V1_PLAYED)
example("default", "refuse_v1_close_moves_value", "A v1 close that moves 10 usdc from A to B.",
        v1_update(3, 5, [alloc(A, "60"), alloc(B, "90")]), "reject", "policy.close_not_current", V1_PLAYED)
ESCROW = [create(allocations=[alloc(A, "100"), alloc(B, "100")])]
example("game-escrow", "allow_winner_takes_pot", "B wins: the whole 200 usdc pot to B; A loses its 100 stake.",
        close([alloc(A, "0"), alloc(B, "200")]), "allow", setup=ESCROW)
example("game-escrow", "refuse_pays_out_190", "Only 190 of the 200 usdc pot is paid out.",
        close([alloc(A, "0"), alloc(B, "190")]), "reject", "policy.sum_mismatch", ESCROW)
FIVE_GAMES = [create(definition(nonce=T0 + n), allocations=[alloc(A, "100"), alloc(B, "100")], ts=T0 + n,
                   request_id=10 + n) for n in range(5)]
example("game-escrow", "refuse_sixth_open_game", "Five games of 100 usdc each are open: a sixth stake would be 600.",
        create(definition(nonce=T0 + 5), allocations=[alloc(A, "100"), alloc(B, "100")], ts=T0 + 5, request_id=15),
        "reject", "policy.exposure_exceeded", FIVE_GAMES)
ROOM = definition(application="game-room", participants=(B, C, A), weights=(0, 0, 100), quorum=100)
ROOM_SETUP = [create(ROOM, allocations=[alloc(B, "10"), alloc(C, "10"), alloc(A, "0")])]
example("game-room-arbiter", "allow_winner_takes_pot", "The server (A) gives the 20 usdc pot to the winner B.",
        close([alloc(B, "20"), alloc(C, "0"), alloc(A, "0")], d=ROOM), "allow", setup=ROOM_SETUP)
example("game-room-arbiter", "refuse_server_funds", "A create in which the server would fund 5 usdc.",
        create(ROOM, allocations=[alloc(B, "10"), alloc(C, "10"), alloc(A, "5")]), "reject",
        "policy.funding_exceeded")
example("game-room-arbiter", "refuse_split_omits_player", "A close that leaves player C out of the split.",
        close([alloc(B, "20"), alloc(A, "0")], d=ROOM), "reject", "policy.participant_missing", ROOM_SETUP)
METER = definition(application="api-metering")
METER_SETUP = [create(METER, allocations=[alloc(A, "50"), alloc(B, "0")])]
example("pay-per-use", "allow_pays_service", "The client (A) pays the service 12.5 of its 50 usdc.",
        close([alloc(A, "37.5"), alloc(B, "12.5")], d=METER), "allow", setup=METER_SETUP)
example("pay-per-use", "refuse_unknown_service", "A channel with C, a service not on the allow list.",
        create(definition(application="api-metering", participants=(A, C)), allocations=[alloc(A, "50")]), "reject",
        "policy.counterparty_not_allowed")


def main():
    examples = HERE.parent.parent / "policies" / "examples"
    for old in examples.glob("*/*.json"):
        old.unlink()
    for (stem, name), body in EXAMPLES.items():
        folder = examples / stem
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    existing = {p.name for p in HERE.glob("*.json")}
    written = set()
    for name, body in CASES.items():
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.add(path.name)
    for stale in existing - written:
        (HERE / stale).unlink()
    print(f"{len(written)} cases")


main()
