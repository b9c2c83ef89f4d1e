#!/usr/bin/env bash
# The crash test of issue "Nothing lost across restarts", run long: KILLS (default 500) SIGKILLs at random moments
# while 4 clients reconnect for every request as fast as they can and two busy loops compete for the CPUs
# (Tests/EndToEndTests/DurabilityTests.swift, crashLoop; CI runs it with 40). Writes bench/results/crash-<KILLS>.txt.
#
#   bench/crash.sh [KILLS]
set -euo pipefail
kills=${1:-500}
cd "$(dirname "$0")/.."
scripts/setup --python
# The agent as the host runs it: a release build (a debug agent's start slows with the log until the harness's 20 s
# wait for its first answer runs out, around 400 kills).
swift build -c release --product custodian >/dev/null
swift build --build-tests >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
began=$(date +%s)
CUSTODIAN_CRASH_KILLS=$kills CUSTODIAN_BIN="$PWD/.build/release/custodian" CUSTODIAN_PYTHON="$PWD/.venv/bin/python3" \
    swift test --disable-xctest --filter 'DurabilityTests/crashLoop' 2>&1 | tee "$log" | grep -E 'crash loop:|✘' || true
grep -q 'Test run with 1 test.* passed' "$log" || { echo "crash.sh: the crash test failed" >&2; tail -40 "$log" >&2; exit 1; }
mkdir -p bench/results
{
    echo "custodian crash test ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)), $(($(date +%s) - began)) s"
    grep -o 'crash loop: .*' "$log"
    echo "checked: every signature a client received is in the log with its req; the chain and checkpoints verify;"
    echo "no session has two different closes; every record after a start record was decided before the kill that"
    echo "ended that run; the restarted ledger equals the log's."
} | tee "bench/results/crash-$kills.txt"
