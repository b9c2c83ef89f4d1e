#!/usr/bin/env bash
# Restart time with a long audit log (issue: "restart with one million records").
#
#   bench/restart.sh [RECORDS]        default 1000000
#
# Fills a state directory with RECORDS real decisions (creates and closes of two-party sessions, signed through
# the engine), then times `custodian serve` from exec to its first answer on the socket (unsealing the key with
# the interactive Argon2id cost included), three times, and `custodian-bench replay` for the breakdown. The first
# start replays the whole log (the filled log has no snapshot, as after a crash); its clean stop writes a ledger
# snapshot, from which the next two start.
# Writes bench/results/restart-<RECORDS>.txt.
set -euo pipefail
records=${1:-1000000}
cd "$(dirname "$0")/.."
scripts/setup
swift build -c release --product custodian >/dev/null
swift build -c release --product custodian-bench >/dev/null
bin=.build/release
work=$(mktemp -d /tmp/custodian-restart-XXXXXX)
trap 'pkill -f "serve --socket $work/agent.sock" 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'bench\n' > "$work/passphrase"
chmod 600 "$work/passphrase"
"$bin/custodian" key new --key-file "$work/key" --passphrase-file "$work/passphrase" --kdf interactive >/dev/null
cat > "$work/policy.toml" <<'POLICY'
version = 1
[requests]
methods = ["create_app_session", "submit_app_state", "close_app_session"]
max_age_ms = 600000
[assets.usdc]
decimals = 6
POLICY
fill=$("$bin/custodian-bench" fill-log --key-file "$work/key" --passphrase-file "$work/passphrase" \
    --policy "$work/policy.toml" --state-dir "$work/state" --records "$records")
size=$(du -h "$work/state/audit.log" | cut -f1)
replay=$("$bin/custodian-bench" replay --state-dir "$work/state")
times=()
for attempt in 1 2 3; do
    start=$(date +%s.%N)
    "$bin/custodian" serve --socket "$work/agent.sock" --key-file "$work/key" --policy "$work/policy.toml" \
        --state-dir "$work/state" --passphrase-file "$work/passphrase" 2>"$work/serve.log" &
    pid=$!
    until "$bin/custodian" status --socket "$work/agent.sock" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
        sleep 0.02
    done
    end=$(date +%s.%N)
    times+=("$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')")
    kill -TERM "$pid"
    wait "$pid" || true
done
mkdir -p bench/results
out="bench/results/restart-$records.txt"
{
    echo "custodian restart with a long audit log ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m))"
    echo "$fill; log size $size"
    echo "$replay"
    echo "serve, exec to first answer (s): ${times[0]} with no snapshot (a full replay, as after a crash); ${times[1]} and ${times[2]} from the snapshot of the clean stop before"
} | tee "$out"
