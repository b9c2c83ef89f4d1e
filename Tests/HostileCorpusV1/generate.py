#!/usr/bin/env python3
"""Writes the v1 hostile-frame corpus: one file per Nitrolite v1 frame that nitronode's Go decoding could read
differently from a strict parser (PROTOCOL-v1 section 7), or that custodian must refuse for another stated reason,
each with the outcome custodian must give, stated by hand: "reject" with a reason code, or "accept" with the ABI hash
of the state (computed here with eth-abi from the values as Go reads them: amounts normalised).

The base is the close of Tests/Vectors/v1/close_two_party.json (quorum_sigs emptied).

    .venv/bin/python3 Tests/HostileCorpusV1/generate.py      (scripts/setup --python makes .venv)
"""
import json
import pathlib
from decimal import Decimal

from eth_abi import encode
from eth_utils import keccak

HERE = pathlib.Path(__file__).resolve().parent
VECTOR = json.loads((HERE.parent / "Vectors" / "v1" / "close_two_party.json").read_text(encoding="utf-8"))
A = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
B = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ID = VECTOR["app_session_id"]
SIG_B = VECTOR["signatures"][1]["quorum_sig"]
CASES = {}


def alloc(p=A, amount='"70"', asset='"usdc"', extra=""):
    return '{"participant":"%s","asset":%s,"amount":%s%s}' % (p, asset, amount, extra)


def update(intent="3", version='"6"', allocations=None, session_data='""', extra="", sid='"%s"' % ID):
    allocations = allocations if allocations is not None else "[" + alloc() + "," + alloc(B, '"30"') + "]"
    return ('{"app_session_id":%s,"intent":%s,"version":%s,"allocations":%s,"session_data":%s%s}'
            % (sid, intent, version, allocations, session_data, extra))


def payload(u=None, sigs="[]", extra=""):
    return '{"app_state_update":%s,"quorum_sigs":%s%s}' % (u if u is not None else update(), sigs, extra)


def frame(p=None, method='"app_sessions.v1.submit_app_state"', kind="1", rid="4211", ts="1767225600000"):
    return "[%s,%s,%s,%s,%s]" % (kind, rid, method, p if p is not None else payload(), ts)


def plain(amount):
    text = format(Decimal(amount), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def update_hash(frame_text):
    """The ABI hash of the state, from Python's reading of the frame (json.loads), amounts as Go normalises them."""
    u = json.loads(frame_text)[3]["app_state_update"]
    allocations = [(a["participant"], a["asset"], plain(a["amount"])) for a in u["allocations"]]
    values = [bytes.fromhex(u["app_session_id"][2:]), u["intent"], int(u["version"]), allocations,
              u.get("session_data", "")]
    return "0x" + keccak(encode(["bytes32", "uint8", "uint64", "(address,string,string)[]", "string"], values)).hex()


def add(name, body, text):
    assert name not in CASES, name
    if isinstance(text, bytes):
        body["frame_hex"] = text.hex()
    else:
        body["frame_text"] = text
    CASES[name] = body


def reject(name, comment, text, reason):
    add(name, {"comment": comment, "expect": "reject", "reason": reason}, text)


def accept(name, comment, text, same_as_vector=True):
    h = update_hash(text)
    if same_as_vector:
        assert h == VECTOR["packed_hash"], (name, h)
    add(name, {"comment": comment, "expect": "accept", "packed_hash": h}, text)


# Accepted: the same state however it is spelled, and a different order that is a different state.
accept("canonical", "The vector's close with no signature yet.", frame())
accept("whitespace_between_tokens", "Spaces and newlines between tokens do not change the values.",
       frame(payload().replace(",", " ,\n ").replace(":", " : ")))
accept("keys_in_another_order", "Object keys in another order: the same values, the same hash.",
       frame('{"quorum_sigs":[],"app_state_update":{"session_data":"","allocations":[%s,%s],"version":"6",'
             '"intent":3,"app_session_id":"%s"}}' % (alloc(), alloc(B, '"30"'), ID)))
accept("amount_trailing_zeros", "\"70.000000\" is 70: Go hashes Decimal.String(), \"70\".",
       frame(payload(update(allocations="[" + alloc(amount='"70.000000"') + "," + alloc(B, '"30.0"') + "]"))))
accept("asset_escaped", "\"\\u0075sdc\" is the string usdc.",
       frame(payload(update(allocations="[" + alloc(asset='"\\u0075sdc"') + "," + alloc(B, '"30"') + "]"))))
accept("session_data_absent", "Without session_data Go reads \"\", which is what is hashed.",
       frame(payload(update().replace(',"session_data":""', ""))))
accept("quorum_sigs_of_b", "B's quorum signature already there: not part of the hash.",
       frame(payload(sigs='["%s"]' % SIG_B)))
accept("allocations_reversed", "B's allocation first: the order is hashed, so this is another state.",
       frame(payload(update(allocations="[" + alloc(B, '"30"') + "," + alloc() + "]"))), same_as_vector=False)

# PROTOCOL-v1 section 7, row by row.
reject("dup_intent", "intent twice: Go takes the last.", frame(payload(update(intent='3,"intent":0'))),
       "payload.duplicate_key")
reject("dup_amount", "amount twice in one allocation.",
       frame(payload(update(allocations="[" + alloc(amount='"70","amount":"1"') + "," + alloc(B, '"30"') + "]"))),
       "payload.duplicate_key")
reject("dup_app_state_update", "app_state_update twice at the top of the payload.",
       frame('{"app_state_update":%s,"app_state_update":%s,"quorum_sigs":[]}' % (update(), update())),
       "payload.duplicate_key")
reject("case_Intent_beside_intent", "Intent beside intent: Go matches keys case-insensitively.",
       frame(payload(update(extra=',"Intent":0'))), "payload.unknown_field")
reject("case_INTENT_beside_intent", "INTENT beside intent.", frame(payload(update(extra=',"INTENT":0'))),
       "payload.unknown_field")
reject("fold_long_s_session_data", "ſession_data (U+017F) folds to session_data in Go.",
       frame(payload(update(extra=',"\u017fession_data":"x"'))), "payload.unknown_field")
reject("fold_long_s_asset", "asſet beside asset in an allocation.",
       frame(payload(update(allocations="[" + alloc(extra=',"as\u017fet":"eth"') + "," + alloc(B, '"30"') + "]"))),
       "payload.unknown_field")
reject("case_APP_STATE_UPDATE_merges", "APP_STATE_UPDATE beside app_state_update: Go merges the two objects.",
       frame('{"app_state_update":%s,"APP_STATE_UPDATE":{"intent":0},"quorum_sigs":[]}' % update()),
       "payload.unknown_field")
reject("intent_missing", "No intent: Go reads 0, an operate.", frame(payload(update().replace('"intent":3,', ""))),
       "payload.malformed")
reject("intent_null", "intent null: Go reads 0.", frame(payload(update(intent="null"))), "payload.malformed")
reject("intent_string", "intent \"close\": the Go type is uint8.", frame(payload(update(intent='"close"'))),
       "payload.malformed")
reject("intent_float", "intent 3.0.", frame(payload(update(intent="3.0"))), "payload.malformed")
reject("intent_exponent", "intent 3e0.", frame(payload(update(intent="3e0"))), "payload.malformed")
reject("intent_256", "intent 256 does not fit uint8.", frame(payload(update(intent="256"))), "payload.malformed")
reject("intent_negative", "intent -1.", frame(payload(update(intent="-1"))), "payload.malformed")
reject("intent_5", "intent 5 is no intent nitronode defines.", frame(payload(update(intent="5"))),
       "payload.malformed")
reject("intent_rebalance", "intent 4 (rebalance) moves value between sessions: no policy covers it.",
       frame(payload(update(intent="4"))), "payload.method_not_allowed")
reject("intent_deposit_on_submit_app_state", "A deposit goes to submit_deposit_state.",
       frame(payload(update(intent="1"))), "payload.malformed")
reject("intent_close_on_submit_deposit_state", "submit_deposit_state takes intent 1 only.",
       frame(payload(extra=',"user_state":{}'), method='"app_sessions.v1.submit_deposit_state"'),
       "payload.malformed")
reject("version_number", "version 6 as a JSON number: Go's decimal string type refuses it.",
       frame(payload(update(version="6"))), "payload.malformed")
reject("version_leading_zero", "version \"06\": Go reads 6.", frame(payload(update(version='"06"'))),
       "payload.malformed")
reject("version_plus", "version \"+6\".", frame(payload(update(version='"+6"'))), "payload.malformed")
reject("version_zero", "version \"0\": versions start at 1.", frame(payload(update(version='"0"'))),
       "payload.malformed")
reject("version_2_64", "version 2^64 does not fit uint64.", frame(payload(update(version='"18446744073709551616"'))),
       "payload.malformed")
for label, amount in [("number", "70"), ("null", "null"), ("empty", '""'), ("exponent", '"7e1"'),
                      ("plus", '"+70"'), ("leading_zero", '"070"'), ("leading_dot", '".5"'),
                      ("trailing_dot", '"5."'), ("minus_zero", '"-0"'), ("negative", '"-70"'), ("space", '" 70"')]:
    reject("amount_" + label, "amount %s: not in ^(0|[1-9][0-9]*)(\\.[0-9]+)?$ (Go accepts some of these and "
           "hashes them plain)." % amount,
           frame(payload(update(allocations="[" + alloc(amount=amount) + "," + alloc(B, '"30"') + "]"))),
           "payload.bad_amount")
reject("participant_0X_prefix", "0X…: Go lower-cases it; custodian requires EIP-55.",
       frame(payload(update(allocations="[" + alloc(p="0X" + A[2:]) + "," + alloc(B, '"30"') + "]"))),
       "payload.bad_address")
reject("participant_lower_case", "A in lower case is not its EIP-55 form.",
       frame(payload(update(allocations="[" + alloc(p=A.lower()) + "," + alloc(B, '"30"') + "]"))),
       "payload.bad_address")
reject("app_session_id_upper_case", "Go looks the session up lower-cased; custodian requires lower-case hex.",
       frame(payload(update(sid='"0x%s"' % ID[2:].upper()))), "payload.malformed")
reject("app_session_id_short", "62 hex digits: Go's HexToHash pads them.",
       frame(payload(update(sid='"%s"' % ID[:-2]))), "payload.malformed")
reject("app_session_id_long", "66 hex digits: Go's HexToHash crops them.",
       frame(payload(update(sid='"%s00"' % ID))), "payload.malformed")
reject("app_session_id_no_prefix", "No 0x.", frame(payload(update(sid='"%s"' % ID[2:]))), "payload.malformed")
reject("unknown_rebalance_key", "A rebalance key in the update: Go ignores it.",
       frame(payload(update(extra=',"rebalance":true'))), "payload.unknown_field")
reject("unknown_foo_key", "An unknown key in the payload.", frame(payload(extra=',"foo":1')), "payload.unknown_field")
reject("signatures_v0_name", "\"signatures\" (the README's stale name) beside quorum_sigs.",
       frame(payload(extra=',"signatures":[]')), "payload.unknown_field")
reject("allocations_null", "allocations null: Go reads an empty list.", frame(payload(update(allocations="null"))),
       "payload.malformed")
reject("invalid_utf8_session_data", "An invalid UTF-8 byte in session_data: Go hashes U+FFFD.",
       frame(payload(update(session_data='"a\xffb"'))).encode("latin-1"), "payload.malformed")
reject("lone_surrogate_session_data", "\\ud800 alone in session_data: Go hashes U+FFFD.",
       frame(payload(update(session_data='"\\ud800"'))), "payload.malformed")
reject("lone_surrogate_asset", "\\udc00 alone in an asset.",
       frame(payload(update(allocations="[" + alloc(asset='"\\udc00"') + "," + alloc(B, '"30"') + "]"))),
       "payload.malformed")
reject("type_2", "Element 0 is 2 (a response): nitronode dispatches it anyway.", frame(kind="2"),
       "payload.malformed")
reject("type_float", "Element 0 is 1.0.", frame(kind="1.0"), "payload.malformed")
reject("bytes_after_frame", "Bytes after the array.", frame() + "x", "payload.malformed")
reject("two_frames", "Two frames in one message.", frame() + frame(), "payload.malformed")
reject("byte_order_mark", "A UTF-8 byte order mark before the frame.", b"\xef\xbb\xbf" + frame().encode(), "payload.malformed")
reject("request_id_negative", "request id -1 does not fit uint64.", frame(rid="-1"), "payload.malformed")
reject("request_id_float", "request id 7.0.", frame(rid="7.0"), "payload.malformed")
reject("request_id_string", "request id \"1\".", frame(rid='"1"'), "payload.malformed")
reject("timestamp_exponent", "ts 1e12.", frame(ts="1e12"), "payload.malformed")
reject("timestamp_2_64", "ts 2^64.", frame(ts="18446744073709551616"), "payload.malformed")
reject("six_elements", "Six elements: neither a v0 req nor a v1 frame.", frame()[:-1] + ",0]", "payload.malformed")
reject("payload_array", "The payload is an array.", frame("[]"), "payload.malformed")
reject("method_case_variant", "Method names are case-sensitive.", frame(method='"App_sessions.v1.submit_app_state"'),
       "payload.method_not_allowed")
reject("method_session_key_state", "A session-key registration: the most powerful v1 signature, refused.",
       frame('{"state":{}}', method='"app_sessions.v1.submit_session_key_state"'), "payload.method_not_allowed")
reject("method_channel_state", "A channel frame is no app-session request: the app-session reader refuses it (the "
       "agent reads channel frames with its channel reader, under a [channels] policy).",
       frame('{"state":{}}', method='"channels.v1.submit_state"'), "payload.method_not_allowed")
reject("method_rebalance", "rebalance_app_sessions.", frame('{}', method='"app_sessions.v1.rebalance_app_sessions"'),
       "payload.method_not_allowed")
reject("method_v0_name_in_frame", "A v0 method name in a v1 frame.", frame(method='"close_app_session"'),
       "payload.method_not_allowed")
reject("deposit_without_user_state", "submit_deposit_state without user_state.",
       frame(payload(update(intent="1")), method='"app_sessions.v1.submit_deposit_state"'), "payload.malformed")
reject("deposit_user_state_string", "user_state is a string.",
       frame(payload(update(intent="1"), extra=',"user_state":"x"'), method='"app_sessions.v1.submit_deposit_state"'),
       "payload.malformed")
reject("quorum_sigs_missing", "No quorum_sigs (custodian appends to it; it may be empty).",
       frame('{"app_state_update":%s}' % update()), "payload.malformed")
reject("quorum_sigs_not_array", "quorum_sigs is a string.", frame(payload(sigs='"0x"')), "payload.malformed")
reject("quorum_sigs_number", "A quorum_sigs entry is a number.", frame(payload(sigs="[1]")), "payload.malformed")
reject("session_data_1025_bytes", "session_data over nitronode's 1024 bytes.",
       frame(payload(update(session_data='"%s"' % ("x" * 1025)))), "payload.malformed")
reject("nesting_33_deep", "33 levels of nesting in user_state.",
       frame(payload(update(intent="1"), extra=',"user_state":' + "[" * 31 + "]" * 31),
             method='"app_sessions.v1.submit_deposit_state"'), "payload.malformed")

DEFINITION = ('{"application_id":"chess","participants":[{"wallet_address":"%s","signature_weight":1},'
              '{"wallet_address":"%s","signature_weight":1}],"quorum":2,"nonce":"1733000000000"}' % (A, B))


def create(definition=DEFINITION, extra=""):
    return frame('{"definition":%s,"session_data":"","quorum_sigs":[]%s}' % (definition, extra),
                 method='"app_sessions.v1.create_app_session"')


reject("create_application_v0_key", "v0's application key: nitronode decodes it as an empty application_id.",
       create(DEFINITION.replace('"application_id"', '"application"')), "payload.unknown_field")
reject("create_protocol_key", "A protocol key: v1's definition has none.",
       create(DEFINITION.replace('{"application_id"', '{"protocol":"NitroRPC/0.4","application_id"')),
       "payload.unknown_field")
reject("create_nonce_number", "nonce as a number: a decimal string on the wire.",
       create(DEFINITION.replace('"1733000000000"', "1733000000000")), "payload.malformed")
reject("create_quorum_256", "quorum 256 does not fit uint8.", create(DEFINITION.replace('"quorum":2', '"quorum":256')),
       "payload.malformed")
reject("create_weight_negative", "signature_weight -1.",
       create(DEFINITION.replace('"signature_weight":1}', '"signature_weight":-1}', 1)), "payload.malformed")
reject("create_participants_strings", "Participants as bare addresses (v0's form).",
       create(DEFINITION.replace(DEFINITION[DEFINITION.index("["):DEFINITION.index("]") + 1], '["%s","%s"]' % (A, B))),
       "payload.malformed")
reject("create_dup_wallet_address", "wallet_address twice in one participant.",
       create(DEFINITION.replace('"signature_weight":1}', '"signature_weight":1,"wallet_address":"%s"}' % B, 1)),
       "payload.duplicate_key")
reject("create_allocations", "v0's allocations in a v1 create: creates carry no funds.",
       create(extra=',"allocations":[]'), "payload.unknown_field")


def main():
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
