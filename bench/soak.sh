#!/usr/bin/env bash
# Soak: RSS over a million signed requests.
#
#   bench/soak.sh [REQUESTS]        default 1000000
#
# Builds custodian in release mode, starts it as bench/run.sh does (key A, the kit's session), and drives it with
# the kit's load generator at 16 clients in 10-second rounds until REQUESTS requests were signed, reading the
# agent's resident set after every round. Passes when the last reading is within 10 % (and 4 MiB) of the reading
# after the first round, which is the warm state. Writes bench/results/soak.md. The audit log grows by about 1 KB
# per request (1 GB for a million) under a temporary directory on disk, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-1000000}
source bench/lib.sh
bench_begin soak
bench_prepare
cc -O2 -pthread -o "$work/loadgen" bench/kit/loadgen.c -lsecp256k1 -lcrypto
setsid "$bin/custodian" serve --socket "$work/agent.sock" --key-file "$work/key" --policy "$work/policy.toml" \
    --passphrase-file "$work/passphrase" --state-dir "$work/state" 2>/dev/null &
agent_pid=$!
until "$bin/custodian" status --socket "$work/agent.sock" >/dev/null 2>&1; do sleep 0.01; done
"$bin/custodian" sign --socket "$work/agent.sock" --file "$work/v1.json" >/dev/null
rss() { awk '/VmRSS/ {print $2}' "/proc/$agent_pid/status"; }
done_count=0
rounds=()
first=""
while [ "$done_count" -lt "$total" ]; do
    out=$("$work/loadgen" --socket "$work/agent.sock" --clients 16 --seconds 10 --warmup 0 --message-file "$work/close.txt" 2>&1)
    ok=$(echo "$out" | sed -n 's/.*requests ok \([0-9]*\) *errors \([0-9]*\).*/\1/p' | tail -1)
    errors=$(echo "$out" | sed -n 's/.*requests ok [0-9]* *errors \([0-9]*\).*/\1/p' | tail -1)
    [ -n "$ok" ] || { echo "soak: the load generator printed no count:" >&2; echo "$out" >&2; exit 1; }
    [ "$errors" = 0 ] || { echo "soak: $errors errors" >&2; echo "$out" >&2; exit 1; }
    done_count=$((done_count + ok))
    now=$(rss)
    [ -n "$first" ] || first=$now
    rounds+=("| $done_count | $now |")
    echo "soak: $done_count signed, RSS $now KiB" >&2
done
last=$(rss)
status=$("$bin/custodian" status --socket "$work/agent.sock")
kill -TERM "$agent_pid"; wait "$agent_pid" || true; agent_pid=""
growth=$((last - first))
limit=$((first / 10 > 4096 ? first / 10 : 4096))
verdict="flat: grew ${growth} KiB from the first round to the last (limit ${limit} KiB)"
[ "$growth" -le "$limit" ] || verdict="NOT flat: grew ${growth} KiB (limit ${limit} KiB)"
mkdir -p bench/results
{
    echo "# custodian soak, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) vCPUs, $(uname -m), kernel $(uname -r). Command: bench/soak.sh $total"
    echo "16 clients in 10 s rounds, the kit's close, durable (log on $(stat -f -c %T "$work"))."
    echo
    echo "| signed so far | agent RSS (KiB) |"
    echo "|---:|---:|"
    printf '%s\n' "${rounds[@]}"
    echo
    echo "Result: $verdict."
    echo "Agent status at the end: $status"
} >bench/results/soak.md
echo "soak: $verdict"
[ "$growth" -le "$limit" ]
