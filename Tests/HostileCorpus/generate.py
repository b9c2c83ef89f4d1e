#!/usr/bin/env python3
"""Writes the hostile-input corpus: one file per message that ClearNode's Go decoding could read differently
from a naive parser (PROTOCOL.md section 10), each with the outcome custodian must give, stated by hand:
"reject" with a reason code, or "accept" with the exact signed span and the fields read.

    python3 Tests/HostileCorpus/generate.py
"""
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
A = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
B = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ID = "0x3186abf9003acc50f21f6436ec0e92a3ca67e54bc77e07c0b0f44d841cb419af"
TS = "1733000060000"
CASES = {}


def alloc(p=A, asset="usdc", amount='"75"'):
    return '{"participant":"%s","asset":"%s","amount":%s}' % (p, asset, amount)


ALLOCS = "[" + alloc() + "," + alloc(B, amount='"75"') + "]"


def params(body=None):
    return body if body is not None else '{"app_session_id":"%s","allocations":%s}' % (ID, ALLOCS)


def req(rid="1002", method='"close_app_session"', p=None, ts=TS):
    return "[%s,%s,%s,%s]" % (rid, method, params(p), ts)


def env(r=None, sig='[]', extra=""):
    return '{"req":%s,"sig":%s%s}' % (r if r is not None else req(), sig, extra)


def reject(name, comment, message, reason):
    add(name, {"comment": comment, "expect": "reject", "reason": reason}, message)


def accept(name, comment, message, span, request_id=1002, method="close_app_session"):
    add(name, {"comment": comment, "expect": "accept", "req_text": span, "request_id": request_id, "method": method},
        message)


def add(name, body, message):
    assert name not in CASES, name
    if isinstance(message, bytes):
        body["message_hex"] = message.hex()
    else:
        body["message"] = message
    CASES[name] = body


# Duplicate keys at each depth, also when one copy is spelled with escapes.
reject("dup_top_level_req", "req twice at the top: Go takes the last.", '{"req":%s,"req":%s,"sig":[]}' % (req(), req()),
       "payload.duplicate_key")
reject("dup_top_level_sig", "sig twice.", '{"req":%s,"sig":[],"sig":[]}' % req(), "payload.duplicate_key")
reject("dup_params_allocations", "allocations twice in params.",
       env(req(p='{"app_session_id":"%s","allocations":%s,"allocations":[]}' % (ID, ALLOCS))), "payload.duplicate_key")
reject("dup_params_escaped", "\\u0061llocations is allocations: a duplicate, not another key.",
       env(req(p='{"app_session_id":"%s","allocations":%s,"\\u0061llocations":[]}' % (ID, ALLOCS))),
       "payload.duplicate_key")
reject("dup_params_id_escaped", "app_session_id spelled with \\u005f.",
       env(req(p='{"app_session_id":"%s","app\\u005fsession_id":"%s","allocations":%s}' % (ID, ID, ALLOCS))),
       "payload.duplicate_key")
reject("dup_allocation_amount", "amount twice in one allocation.",
       env(req(p='{"app_session_id":"%s","allocations":[%s]}' % (ID, '{"participant":"%s","asset":"usdc","amount":"1","amount":"2"}' % A))),
       "payload.duplicate_key")
reject("dup_allocation_participant", "participant twice in one allocation.",
       env(req(p='{"app_session_id":"%s","allocations":[%s]}' % (ID, '{"participant":"%s","participant":"%s","asset":"usdc","amount":"1"}' % (A, B)))),
       "payload.duplicate_key")
reject("dup_definition_nonce", "nonce twice in a definition.",
       env(req(rid="1001", method='"create_app_session"', p='{"definition":{"application":"chess","protocol":"NitroRPC/0.4","participants":["%s","%s"],"weights":[50,50],"quorum":100,"challenge":86400,"nonce":1,"nonce":2},"allocations":[]}' % (A, B))),
       "payload.duplicate_key")
reject("dup_jsonrpc_style_nested", "a repeated key three levels down, escaped on both sides.",
       env(req(p='{"app_session_id":"%s","allocations":[{"\\u0070articipant":"%s","p\\u0061rticipant":"%s","asset":"usdc","amount":"1"}]}' % (ID, A, A))),
       "payload.duplicate_key")

# Case variants and Unicode-folded names: Go's case-insensitive, folding field match.
for name, key in [("case_Allocations", "Allocations"), ("case_ALLOCATIONS", "ALLOCATIONS"),
                  ("case_App_session_id", "App_session_id")]:
    reject(name, "%s beside the real key: Go may take either." % key,
           env(req(p='{"app_session_id":"%s","allocations":%s,"%s":[]}' % (ID, ALLOCS, key))), "payload.unknown_field")
reject("case_REQ_top_level", "REQ beside req.", '{"req":%s,"REQ":%s,"sig":[]}' % (req(), req()), "payload.unknown_field")
reject("case_Sig_top_level", "Sig instead of sig.", '{"req":%s,"Sig":[]}' % req(), "payload.unknown_field")
reject("case_Amount_in_allocation", "Amount beside amount.",
       env(req(p='{"app_session_id":"%s","allocations":[{"participant":"%s","asset":"usdc","amount":"1","Amount":"2"}]}' % (ID, A))),
       "payload.unknown_field")
reject("fold_long_s_allocations", "allocation\u017f (U+017F folds to s) beside allocations.",
       env(req(p='{"app_session_id":"%s","allocations":%s,"allocation\u017f":[]}' % (ID, ALLOCS))), "payload.unknown_field")
reject("fold_long_s_session_data", "\u017fession_data: Go folds it to session_data.",
       env(req(p='{"app_session_id":"%s","allocations":%s,"\u017fession_data":"x"}' % (ID, ALLOCS))),
       "payload.unknown_field")
reject("fold_kelvin_in_key", "a key with U+212A KELVIN SIGN where K would be: never a known key.",
       env(req(p='{"app_session_id":"%s","allocations":%s,"\u212aey":1}' % (ID, ALLOCS))), "payload.unknown_field")
reject("unknown_sid_top_level", "sid is read by ClearNode's message method only: refused.",
       '{"req":%s,"sig":[],"sid":"x"}' % req(), "payload.unknown_field")

# Amounts.
for name, amount in [("amount_number", "75"), ("amount_number_fraction", "0.1"), ("amount_null", "null"),
                     ("amount_bool", "true"), ("amount_array", '["75"]'), ("amount_object", '{"v":"75"}')]:
    reject(name, "amount as %s." % amount, env(req(p='{"app_session_id":"%s","allocations":[%s,%s]}' % (ID, alloc(amount=amount), alloc(B)))),
           "payload.bad_amount")
for name, amount in [("amount_exponent", "1e2"), ("amount_exponent_upper", "1E2"), ("amount_exponent_fraction", "1.5e1"),
                     ("amount_plus", "+3"), ("amount_leading_zero", "01"), ("amount_leading_zeros_fraction", "00.5"),
                     ("amount_minus_zero", "-0"), ("amount_negative", "-1"), ("amount_leading_dot", ".5"),
                     ("amount_trailing_dot", "5."), ("amount_space", " 5"), ("amount_hex", "0x10"),
                     ("amount_comma", "1,5"), ("amount_empty", ""), ("amount_79_digits", "1" + "0" * 78),
                     ("amount_arabic_digit", "\u0661"), ("amount_infinity", "Infinity"), ("amount_nan", "NaN")]:
    reject(name, "amount %r is not in the grammar." % amount,
           env(req(p='{"app_session_id":"%s","allocations":[%s,%s]}' % (ID, alloc(amount=json.dumps(amount, ensure_ascii=False)), alloc(B)))),
           "payload.bad_amount")
big = "9" * 78
span = req(p='{"app_session_id":"%s","allocations":[%s,%s]}' % (ID, alloc(amount='"%s"' % big), alloc(B)))
accept("amount_78_digits", "78 integer digits (uint256 has 78) are read exactly.", env(span), span)

# Bytes: UTF-8, surrogates, BOM, NUL.
base = env()
# Invalid UTF-8 placed where XX stands in the params; every one is refused.
PARAMS_WITH_DATA = '{"app_session_id":"%s","allocations":%s,"session_data":"XX"}' % (ID, ALLOCS)
for name, description, body, raw in [
    ("invalid_utf8_in_string", "0xC3 0x28 in session_data.", PARAMS_WITH_DATA, b"\xc3\x28"),
    ("invalid_utf8_in_key", "0xFF in a key.", '{"app_session_id":"%s","allocations":%s,"XX":1}' % (ID, ALLOCS), b"\xff"),
    ("truncated_utf8_at_end_of_string", "a lead byte with no continuation.",
     '{"app_session_id":"%s","allocations":%s,"session_data":"aXX"}' % (ID, ALLOCS), b"\xe2\x82"),
    ("overlong_slash", "0xC0 0xAF: an overlong '/'.", PARAMS_WITH_DATA, b"\xc0\xaf"),
    ("overlong_three_bytes", "0xE0 0x80 0xAF: a three-byte overlong '/'.", PARAMS_WITH_DATA, b"\xe0\x80\xaf"),
    ("surrogate_encoded_raw", "0xED 0xA0 0x80: a surrogate in raw UTF-8 (CESU).", PARAMS_WITH_DATA, b"\xed\xa0\x80"),
]:
    reject(name, description, env(req(p=body)).encode().replace(b"XX", raw), "payload.malformed")
for name, escape in [("lone_high_surrogate", "\\ud800"), ("lone_low_surrogate", "\\udc00"),
                     ("high_then_non_low", "\\ud800\\u0041"), ("reversed_pair", "\\udc00\\ud800")]:
    reject(name, "%s in session_data: Go would substitute U+FFFD." % escape,
           env(req(p='{"app_session_id":"%s","allocations":%s,"session_data":"%s"}' % (ID, ALLOCS, escape))), "payload.malformed")
pair_span = req(p='{"app_session_id":"%s","allocations":%s,"session_data":"\\ud83c\\udfc6"}' % (ID, ALLOCS))
accept("valid_surrogate_pair", "an escaped surrogate pair (a trophy) is one scalar: accepted, bytes kept.", env(pair_span), pair_span)
reject("byte_order_mark", "a UTF-8 BOM before the envelope.", b"\xef\xbb\xbf" + base.encode(), "payload.malformed")
reject("nul_raw_in_string", "a raw NUL inside a string.",
       env(req(p='{"app_session_id":"%s","allocations":%s,"session_data":"aXXb"}' % (ID, ALLOCS))).encode().replace(b"XX", b"\x00"),
       "payload.malformed")
reject("nul_after_envelope", "a NUL after the envelope.", base.encode() + b"\x00", "payload.malformed")
nul_span = req(p='{"app_session_id":"%s","allocations":%s,"session_data":"a\\u0000b"}' % (ID, ALLOCS))
accept("nul_escaped_in_string", "an escaped NUL is valid JSON text: accepted, the bytes kept as sent.", env(nul_span), nul_span)
reject("control_raw_in_string", "a raw tab inside a string.",
       env(req(p='{"app_session_id":"%s","allocations":%s,"session_data":"a\tb"}' % (ID, ALLOCS))), "payload.malformed")

# Structure.
deep = "[" * 10000 + "]" * 10000
reject("nesting_10000_deep", "10,000 nested arrays inside params.",
       env(req(p='{"app_session_id":"%s","allocations":%s,"x":%s}' % (ID, ALLOCS, deep))), "payload.malformed")
reject("nesting_depth_33", "31 arrays inside params reach depth 33, one past the limit (32).",
       env(req(p='{"app_session_id":"%s","allocations":%s,"x":%s}' % (ID, ALLOCS, "[" * 31 + "]" * 31))), "payload.malformed")
reject("nesting_depth_32", "30 arrays inside params reach depth 32, the limit: parsed, then refused for the key.",
       env(req(p='{"app_session_id":"%s","allocations":%s,"x":%s}' % (ID, ALLOCS, "[" * 30 + "]" * 30))), "payload.unknown_field")
reject("bytes_after_envelope", "garbage after the envelope.", base + " x", "payload.malformed")
reject("two_envelopes", "two envelopes on one line.", base + base, "payload.malformed")
reject("envelope_then_comma", "a trailing comma after the envelope.", base + ",", "payload.malformed")
reject("req_three_elements", "req with 3 elements.", env("[1002,\"close_app_session\",%s]" % params()), "payload.malformed")
reject("req_five_elements", "req with 5 elements.", env(req()[:-1] + ",0]"), "payload.malformed")
reject("req_not_array", "req as an object.", '{"req":{"0":1002},"sig":[]}', "payload.malformed")
reject("params_array", "params as a one-element array (before v0.3).", env("[1002,\"close_app_session\",[%s],%s]" % (params(), TS)),
       "payload.malformed")
reject("sig_not_array", "sig as a string.", env(sig='"0x00"'), "payload.malformed")
reject("sig_short", "a co-signature of 64 bytes.", env(sig='["0x' + "00" * 64 + '"]'), "payload.malformed")
reject("sig_no_prefix", "a co-signature without 0x.", env(sig='["' + "00" * 65 + '"]'), "payload.malformed")
reject("method_not_string", "the method as a number.", env(req(method="7")), "payload.malformed")
reject("method_case_variant", "Close_app_session: not a method custodian signs.", env(req(method='"Close_app_session"')),
       "payload.method_not_allowed")
reject("method_auth_verify", "auth_verify is never signed here.", env(req(method='"auth_verify"', p="{}")), "payload.method_not_allowed")

# Request ids and timestamps.
for name, rid in [("request_id_zero", "0"), ("request_id_float", "7.0"), ("request_id_exponent", "1e3"),
                  ("request_id_2_53", "9007199254740992"), ("request_id_uint64_max", "18446744073709551615"),
                  ("request_id_negative", "-1"), ("request_id_string", '"1002"'), ("request_id_null", "null")]:
    reject(name, "request id %s." % rid, env(req(rid=rid)), "payload.malformed")
max_span = req(rid="9007199254740991")
accept("request_id_2_53_minus_1", "the largest request id that survives float64.", env(max_span), max_span,
       request_id=9007199254740991)
for name, ts in [("timestamp_string", '"%s"' % TS), ("timestamp_float", TS + ".0"), ("timestamp_exponent", "1.73300006e12"),
                 ("timestamp_zero", "0"), ("timestamp_negative", "-" + TS)]:
    reject(name, "timestamp %s." % ts, env(req(ts=ts)), "payload.malformed")

# White space: outside req harmless, inside req part of the signed bytes.
ws_span = req().replace(",", ", ")
accept("whitespace_inside_req", "spaces inside req are signed as they are.", env(ws_span), ws_span)
accept("whitespace_around_req", "spaces around req are not part of it.", '{ "req" :  %s  , "sig" : [ ] }' % req(), req())
accept("bare_req_array", "a bare req array.", req(), req())
escaped_span = req(p='{"app_session_id":"%s","allocations":%s,"session_data":"caf\\u00e9 \\/ \\"x\\""}' % (ID, ALLOCS))
accept("escapes_kept_verbatim", "escapes are signed as sent, never normalized.", env(escaped_span), escaped_span)


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
