#!/usr/bin/env bash
# Fuzz the request reader and policy evaluation with libFuzzer.
#
#   fuzz/run.sh [SECONDS]      default 60; the corpus grows in fuzz/corpus (seeded from the vectors' messages)
#
# Builds CustodianCore's sources alone (plus BigInt) with -sanitize=fuzzer,address. A crash is written as
# crash-* in the current directory: add it as a regression vector.
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/.."
scripts/setup
swift package resolve >/dev/null
work=$(mktemp -d /tmp/custodian-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
bigint=.build/checkouts/BigInt/Sources
swiftc -O -parse-as-library -module-name BigInt -emit-module -emit-module-path "$work/BigInt.swiftmodule" \
    -emit-library -static -o "$work/libBigInt.a" "$bigint"/*.swift
swiftc -O -parse-as-library -sanitize=fuzzer,address -I "$work" -L "$work" -lBigInt -module-name CustodianCore \
    Sources/CustodianCore/*.swift fuzz/RequestFuzzer.swift -o "$work/fuzz-request"
mkdir -p fuzz/corpus
python3 - <<'PY'
import json, pathlib, hashlib
out = pathlib.Path("fuzz/corpus")
paths = [p for root in ("Tests/Vectors", "Tests/HostileCorpusV1", "Tests/PolicyCases")
         for p in pathlib.Path(root).rglob("*.json")]
for path in paths:
    data = json.loads(path.read_text())
    for key in ("message", "req", "wire", "frame_text"):
        if isinstance(data.get(key), str):
            text = data[key].encode()
            (out / hashlib.sha256(text).hexdigest()[:16]).write_bytes(text)
    for hex_key in ("message_hex", "frame_hex"):
        if not isinstance(data.get(hex_key), str):
            continue
        text = data[hex_key]
        # v0 vectors hold bare hex; v1-channels' hold 0x-prefixed ABI messages (not reader input, but harmless seeds).
        raw = bytes.fromhex(text[2:] if text.startswith("0x") else text)
        (out / hashlib.sha256(raw).hexdigest()[:16]).write_bytes(raw)
PY
SWIFT_BACKTRACE=enable=no "$work/fuzz-request" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
    fuzz/corpus 2>&1 | tail -25
