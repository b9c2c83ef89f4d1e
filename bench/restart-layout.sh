#!/usr/bin/env bash
# One run: the same million-record crash start from one 1 GB file and from 256 MiB segments, alternated.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
swift build -c release --product custodian >/dev/null
swift build -c release --product custodian-bench >/dev/null
bin=.build/release
work=$(mktemp -d /tmp/custodian-segcmp-XXXXXX)
trap 'pkill -f "serve --socket $work/agent.sock" 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'bench\n' > "$work/passphrase"; chmod 600 "$work/passphrase"
"$bin/custodian" key new --key-file "$work/key" --passphrase-file "$work/passphrase" --kdf interactive >/dev/null
sed -n '/^cat > "\$work\/policy.toml"/,/^POLICY/p' bench/restart.sh | sed '1d;$d' > "$work/policy.toml"
start() {
    local state=$1 begin end pid
    begin=$(date +%s.%N)
    "$bin/custodian" serve --socket "$work/agent.sock" --key-file "$work/key" --policy "$work/policy.toml" \
        --state-dir "$state" --passphrase-file "$work/passphrase" 2>"$work/serve.log" &
    pid=$!
    until "$bin/custodian" status --socket "$work/agent.sock" >/dev/null 2>&1; do sleep 0.02; done
    end=$(date +%s.%N)
    kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
    awk -v s="$begin" -v e="$end" 'BEGIN { printf "%.2f", e - s }'
}
for layout in one:0 seg:268435456; do
    name=${layout%%:*}; bytes=${layout##*:}
    "$bin/custodian-bench" fill-log --key-file "$work/key" --passphrase-file "$work/passphrase" \
        --policy "$work/policy.toml" --state-dir "$work/$name" --records 1000000 --snapshot-every 100000 \
        --segment-max-bytes "$bytes" --crash >/dev/null
    cp -a "$work/$name" "$work/$name.orig"
done
for round in 1 2 3; do
    for name in one seg; do
        rm -rf "$work/$name"; cp -a "$work/$name.orig" "$work/$name"
        echo "$round $name $(start "$work/$name") $(ls "$work/$name" | grep -c 'audit.*log')"
    done
done
