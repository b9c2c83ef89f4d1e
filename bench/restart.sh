#!/usr/bin/env bash
# Restart time and memory with a long audit log (issue: "Nothing lost across restarts").
#
#   bench/restart.sh [RECORDS] [LARGE_RECORDS]      defaults 1000000 and 3000000 (a log of about 3 GiB)
#
# Fills a state directory with RECORDS real decisions (creates and closes of two-party sessions, signed through
# the engine with the agent's default periodic snapshots, every 100,000 records) and ends without a clean stop, as
# a crash would; then times `custodian serve` from exec to its first answer on the socket (unsealing the key with
# the interactive Argon2id cost included) and reads its peak RSS (VmHWM) at that moment. Starts: (1) after that
# crash, from the latest periodic snapshot; (2) as after a crash while the newest snapshot was being written, from
# the one before it (up to 100,000 records of tail); (3) with the snapshot files removed, a full replay; (4) and (5)
# from the snapshot the clean stop before wrote. Then the same crash start on a log of LARGE_RECORDS (0 skips it).
# The KDF's own peak is reported apart: a start on an empty state directory.
# Writes bench/results/restart-<RECORDS>.txt.
set -euo pipefail
records=${1:-1000000}
large=${2:-3000000}
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
[sessions]
[assets.usdc]
decimals = 6
[counterparties]
allow = []
[velocity]
window_s = 86400
max_own_loss = {}
POLICY

# start STATE_DIR: prints "<seconds> <VmHWM MiB> <where the ledger came from>"
start() {
    local state=$1 begin end pid hwm
    begin=$(date +%s.%N)
    "$bin/custodian" serve --socket "$work/agent.sock" --key-file "$work/key" --policy "$work/policy.toml" \
        --state-dir "$state" --passphrase-file "$work/passphrase" 2>"$work/serve.log" &
    pid=$!
    until "$bin/custodian" status --socket "$work/agent.sock" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
        sleep 0.02
    done
    end=$(date +%s.%N)
    hwm=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
    kill -TERM "$pid"
    wait "$pid" || true
    printf '%s %s %s\n' "$(awk -v s="$begin" -v e="$end" 'BEGIN { printf "%.2f", e - s }')" "$hwm" \
        "$(sed -n 's/.*audit seq [0-9]*; //p' "$work/serve.log" | head -1)"
}

empty=$(start "$work/empty")
fill=$("$bin/custodian-bench" fill-log --key-file "$work/key" --passphrase-file "$work/passphrase" \
    --policy "$work/policy.toml" --state-dir "$work/state" --records "$records" --snapshot-every 100000 --crash)
size=$(du -ch "$work"/state/audit*.log | tail -1 | cut -f1)
segments=$(ls "$work"/state/audit*.log | wc -l)
snapshot=$(du -h "$work/state/ledger.snapshot" | cut -f1)
replay=$("$bin/custodian-bench" replay --state-dir "$work/state")
# As after a crash while the newest snapshot was being written (not yet vouched for): the one before it is used, and
# up to 100,000 records after it are replayed. Copied now, before any start adds a clean stop.
cp -a "$work/state" "$work/worst"
rm -f "$work/worst/ledger.snapshot"
mv "$work/worst/ledger.snapshot.prev" "$work/worst/ledger.snapshot"
sync
results=()
results+=("$(start "$work/state")")
results+=("$(start "$work/worst")")
rm -rf "$work/worst"
rm -f "$work/state/ledger.snapshot" "$work/state/ledger.snapshot.prev"
for attempt in 3 4 5; do results+=("$(start "$work/state")"); done
line() { set -- $1; printf '%s s, peak RSS %s MiB (%s)' "$1" "$2" "${*:3}"; }
large_line="skipped"
if [ "$large" -gt 0 ]; then
    rm -rf "$work/state"
    large_fill=$("$bin/custodian-bench" fill-log --key-file "$work/key" --passphrase-file "$work/passphrase" \
        --policy "$work/policy.toml" --state-dir "$work/state" --records "$large" --snapshot-every 100000 --crash)
    large_size=$(du -ch "$work"/state/audit*.log | tail -1 | cut -f1)
    large_line="$large_fill; log size $large_size; serve after the crash: $(line "$(start "$work/state")")"
fi
mkdir -p bench/results
out="bench/results/restart-$records.txt"
{
    echo "custodian restart with a long audit log ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m))"
    echo "start on an empty state directory (the KDF's peak: interactive Argon2id, 64 MiB): $(line "$empty")"
    echo "$fill; log size $size in $segments segment files (256 MiB each, the default); ledger.snapshot $snapshot"
    echo "$replay"
    echo "serve, exec to first answer, and peak RSS (VmHWM) of the start:"
    echo "  after the crash: $(line "${results[0]}")"
    echo "  after a crash while the newest snapshot was being written: $(line "${results[1]}")"
    echo "  with the snapshots removed: $(line "${results[2]}")"
    echo "  after a clean stop: $(line "${results[3]}"); again: $(line "${results[4]}")"
    echo "large log: $large_line"
} | tee "$out"
