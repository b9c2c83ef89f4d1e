#!/usr/bin/env bash
# v1 beside v0, in one run: the same agent, one state directory, signing a v0 close (the kit's), a v1 close and a
# v1 operate, at 1 and 16 clients, in alternating rounds (v0, v1 close, v1 operate, then the reverse order, …) so
# that all three see the same moments of a noisy host. The C ceiling in bench/kit speaks v0 only, so v1 is reported
# as a ratio to custodian's own v0 figures of the same run.
#
#   bench/v1.sh                 8 rounds of 3 s per kind and client count (about 6 minutes)
#   ROUNDS=12 SECONDS_EACH=4 bench/v1.sh
#
# Reported per kind: the medians over the rounds of req/s, p50 and the agent's CPU time per request (user + system,
# from /proc), and the median over the rounds of each round's ratio to v0 (the windows of one round are adjacent in
# time, so a ratio within a round is steadier than a ratio of medians on this noisy host).
#
# Every request is a retry of a state already signed (request id and timestamp fresh each time, the state the
# same), which the policy allows and signs like any other: the full path (read, hash, policy, sign, durable record)
# with a ledger that does not grow. Writes bench/results/v1.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bench_begin v1
bench_prepare
rounds=${ROUNDS:-8}
each=${SECONDS_EACH:-3}
sed -i 's/^methods = .*/methods = ["create_app_session", "submit_app_state", "close_app_session", "app_sessions.v1.create_app_session", "app_sessions.v1.submit_app_state", "app_sessions.v1.submit_deposit_state"]/' "$work/policy.toml"

A=0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638
B=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
create() { # create NONCE
    printf '[1,1,"app_sessions.v1.create_app_session",{"definition":{"application_id":"chess","participants":[{"wallet_address":"%s","signature_weight":1},{"wallet_address":"%s","signature_weight":1}],"quorum":2,"nonce":"%s"},"session_data":"","quorum_sigs":[]},1767225600000]' "$A" "$B" "$1"
}
state() { # state ID INTENT VERSION AMOUNT_A AMOUNT_B REQUEST_ID TS
    local method=submit_app_state extra=""
    if [ "$2" = 1 ]; then method=submit_deposit_state; extra=',"user_state":{}'; fi
    printf '[1,%s,"app_sessions.v1.%s",{"app_state_update":{"app_session_id":"%s","intent":%s,"version":"%s","allocations":[{"participant":"%s","asset":"usdc","amount":"%s"},{"participant":"%s","asset":"usdc","amount":"%s"}],"session_data":""}%s,"quorum_sigs":[]},%s]' \
        "$6" "$method" "$1" "$2" "$3" "$A" "$4" "$B" "$5" "$extra" "$7"
}
session_id() { # session_id CREATE_FILE
    "$bin/custodian" policy test "$work/policy.toml" --message "$1" --address "$A" --now-ms 1767225600000 |
        sed 's/.*"app_session_id":"\([^"]*\)".*/\1/'
}

# The state: the kit's v0 session (created, then closed once) and two v1 sessions, one played to version 4 by an
# operate, one closed at version 4.
"$bin/custodian" serve --socket "$work/agent.sock" --key-file "$work/key" --policy "$work/policy.toml" \
    --passphrase-file "$work/passphrase" --state-dir "$work/state" 2>/dev/null &
agent_pid=$!
until "$bin/custodian" status --socket "$work/agent.sock" >/dev/null 2>&1; do sleep 0.01; done
sign() { printf '%s' "$1" >"$work/m.json"; "$bin/custodian" sign --socket "$work/agent.sock" --file "$work/m.json" >/dev/null; }
sign "$(cat "$work/v1.json")"
sign "$(sed 's/{{id}}/1/; s/{{ts}}/1767225600000/' "$work/close.txt")"
for nonce in 1733000000000 1733000000001; do
    create "$nonce" >"$work/create-$nonce.json"
    sign "$(cat "$work/create-$nonce.json")"
done
operate_id=$(session_id "$work/create-1733000000000.json")
close_id=$(session_id "$work/create-1733000000001.json")
for id in "$operate_id" "$close_id"; do
    sign "$(state "$id" 1 2 100 0 2 1767225600000 | sed 's/,{"participant":"[^"]*","asset":"usdc","amount":"0"}//')"
    sign "$(state "$id" 1 3 100 50 3 1767225600000)"
done
sign "$(state "$operate_id" 0 4 70 80 4 1767225600000)"
sign "$(state "$close_id" 3 4 100 50 4 1767225600000)"
state "$operate_id" 0 4 70 80 '{{id}}' '{{ts}}' >"$work/v1-operate.txt"
state "$close_id" 3 4 100 50 '{{id}}' '{{ts}}' >"$work/v1-close.txt"
cp "$work/close.txt" "$work/v0-close.txt"

cc -O2 -pthread -o "$work/loadgen" bench/kit/loadgen.c -lsecp256k1 -lcrypto
cpu_ticks() { awk '{print $14 + $15}' "/proc/$agent_pid/stat"; }
hz=$(getconf CLK_TCK)
run() { # run KIND CLIENTS: one loadgen window; prints "rps p50_us cpu_us_per_request"
    local before after
    before=$(cpu_ticks)
    "$work/loadgen" --socket "$work/agent.sock" --clients "$2" --seconds "$each" --warmup 1 --no-verify --json \
        --message-file "$work/$1.txt" >"$work/window.json"
    after=$(cpu_ticks)
    python3 - "$work/window.json" "$before" "$after" "$hz" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert r["errors"] == 0, r
# The CPU time covers the warm-up too: divide by the requests of warm-up and window alike (rps x (each + 1 s)).
ticks = int(float(sys.argv[3]) - float(sys.argv[2]))
requests = r["ok"] * (r["seconds"] + r["warmup"]) / r["seconds"]
print(r["rps"], r["p50_us"], round(ticks / int(sys.argv[4]) * 1e6 / requests, 1))
PY
}
declare -A rps p50 cpu ratio
kinds=(v0-close v1-close v1-operate)
for clients in 1 16; do
    for round in $(seq 1 "$rounds"); do
        order=("${kinds[@]}")
        if [ $((round % 2)) = 0 ]; then order=(v1-operate v1-close v0-close); fi
        declare -A this=()
        for kind in "${order[@]}"; do
            read -r r p c < <(run "$kind" "$clients")
            rps[$kind/$clients]+="$r "
            p50[$kind/$clients]+="$p "
            cpu[$kind/$clients]+="$c "
            this[$kind]=$r
        done
        for kind in "${kinds[@]}"; do
            ratio[$kind/$clients]+="$(python3 -c "print(${this[$kind]}/${this[v0-close]})") "
        done
    done
done
kill -TERM "$agent_pid"; wait "$agent_pid" || true; agent_pid=""
"$bin/custodian" audit verify "$work/state" --address "$A" >/dev/null

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mkdir -p bench/results
{
    echo "# v1 beside v0 (bench/v1.sh)"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, commit $(git rev-parse --short HEAD); $rounds rounds of ${each} s per kind"
    echo "and client count, interleaved; durable (fdatasync per batch), release build. Medians over the rounds; the"
    echo "ratio is the median of each round's v1 req/s ÷ v0 req/s; CPU is the agent's user + system time per request."
    echo
    echo "| clients | kind | req/s | p50 µs | agent CPU µs/req | req/s ÷ v0 (per round, median) | v0 p50 ÷ p50 |"
    echo "|---|---|---|---|---|---|---|"
    for clients in 1 16; do
        v0p=$(echo "${p50[v0-close/$clients]}" | median)
        for kind in "${kinds[@]}"; do
            r=$(echo "${rps[$kind/$clients]}" | median)
            p=$(echo "${p50[$kind/$clients]}" | median)
            c=$(echo "${cpu[$kind/$clients]}" | median)
            q=$(echo "${ratio[$kind/$clients]}" | median)
            echo "| $clients | $kind | $r | $p | $c | $(python3 -c "print(f'{$q:.2f}')") | $(python3 -c "print(f'{$v0p/$p:.2f}')") |"
        done
    done
    echo
    echo "Per round, req/s:"
    echo
    for key in $(printf '%s\n' "${!rps[@]}" | sort); do echo "- $key: ${rps[$key]}"; done
} | tee bench/results/v1.md
