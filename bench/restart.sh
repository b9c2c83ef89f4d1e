#!/usr/bin/env bash
# Restart time with a long audit log (issue: "restart with one million records").
#
#   bench/restart.sh [RECORDS]        default 1000000
#
# Fills a state directory with RECORDS real decisions (creates and closes of two-party sessions, signed through
# the engine with the agent's default periodic snapshots, every 100,000 records) and ends without a clean stop, as
# a crash would; then times `custodian serve` from exec to its first answer on the socket (unsealing the key with
# the interactive Argon2id cost included), and `custodian-bench replay` for the breakdown. Starts: (1) after that
# crash, from the latest periodic snapshot; (2) with the snapshot files removed, a full replay; (3) and (4) from
# the snapshot the clean stop before wrote.
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
    --policy "$work/policy.toml" --state-dir "$work/state" --records "$records" --snapshot-every 100000 --crash)
size=$(du -h "$work/state/audit.log" | cut -f1)
replay=$("$bin/custodian-bench" replay --state-dir "$work/state")
times=()
sources=()
for attempt in 1 2 3 4; do
    [ "$attempt" = 2 ] && rm -f "$work/state/ledger.snapshot" "$work/state/ledger.snapshot.prev"
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
    sources+=("$(sed -n 's/.*audit seq [0-9]*; //p' "$work/serve.log" | head -1)")
    kill -TERM "$pid"
    wait "$pid" || true
done
mkdir -p bench/results
out="bench/results/restart-$records.txt"
{
    echo "custodian restart with a long audit log ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m))"
    echo "$fill; log size $size"
    echo "$replay"
    echo "serve, exec to first answer (s): ${times[0]} after the crash (${sources[0]}); ${times[1]} with the snapshots removed (${sources[1]}); ${times[2]} and ${times[3]} after a clean stop (${sources[3]})"
} | tee "$out"
