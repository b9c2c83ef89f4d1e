#!/usr/bin/env bash
# The side-by-side benchmark, in one command:
#
#   bench/run.sh                    default run (3 rounds, about 5 minutes)
#   QUICK=1 bench/run.sh            one short round
#   bench/run.sh --rounds 5 …       any other option goes to bench/kit/compare.sh
#
# Builds custodian in release mode; seals key A of the vectors with the cheap (interactive) KDF; prepares a state
# directory that tracks the kit's session (the V1 create signed once); runs bench/kit/compare.sh (the C ceiling,
# custodian and OpenSSH ssh-agent, interleaved, at 1, 4, 16 and 64 clients). Then: Keccak-256 of 500 bytes against
# the kit's C Keccak; start-up time (exec to first answer, the key unsealed); the agent's peak RSS under 64 clients;
# and the restart time with a million records if bench/restart.sh has written it. Writes bench/results/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bench_begin bench
swift build -c release --product custodian-bench >/dev/null

# Key A, a policy that allows the kit's close (and the 2024 V1 create that sets its session up), a prepared state.
bench_prepare
serve() { # serve STATE_DIR SOCKET (run in the background: exec, so that $! is the agent itself)
    exec "$bin/custodian" serve --socket "$2" --key-file "$work/key" --policy "$work/policy.toml" \
        --passphrase-file "$work/passphrase" --state-dir "$1"
}
wait_for() { until "$bin/custodian" status --socket "$1" >/dev/null 2>&1; do sleep 0.01; done; }
serve "$work/prepared" "$work/prepare.sock" 2>/dev/null &
agent_pid=$!
wait_for "$work/prepare.sock"
"$bin/custodian" sign --socket "$work/prepare.sock" --file "$work/v1.json" >/dev/null
kill -TERM "$agent_pid"; wait "$agent_pid" || true; agent_pid=""
rm -f "$work/prepared/lock"

# 1. Throughput and latency, side by side.
bash bench/kit/compare.sh --agent-label custodian --agent-cmd \
    "cp -a '$work/prepared/.' \"\$STATE_DIR\" && exec '$bin/custodian' serve --socket \"\$SOCK\" --key-file '$work/key' --policy '$work/policy.toml' --passphrase-file '$work/passphrase' --state-dir \"\$STATE_DIR\"" \
    "$@" | tee "$work/compare.md"

# 1b. Without durability: the same agent with its state directory on tmpfs (where fdatasync costs nothing), beside
# the ceiling without sync. custodian has no switch that skips the sync; this is how its peak without it is measured.
shm=$(mktemp -d /dev/shm/custodian-bench-XXXXXX)
bash bench/kit/compare.sh --agent-label custodian --log-dir "$shm" --clients 16,64 --no-ssh-agent --agent-cmd \
    "cp -a '$work/prepared/.' \"\$STATE_DIR\" && exec '$bin/custodian' serve --socket \"\$SOCK\" --key-file '$work/key' --policy '$work/policy.toml' --passphrase-file '$work/passphrase' --state-dir \"\$STATE_DIR\"" \
    "$@" | tee "$work/compare-tmpfs.md"
rm -rf "$shm"

# 2. Keccak-256 of 500 bytes: custodian's Swift against the kit's C.
cc -O2 -o "$work/keccak_c" bench/keccak_c.c
swift_keccak=$("$bin/custodian-bench" keccak --bytes 500 --iterations 400000)
c_keccak=$("$work/keccak_c" 500 400000)

# 3. Start-up: exec to first answer on the socket, with the key unsealed (interactive Argon2id), median of 5.
starts=()
for attempt in 1 2 3 4 5; do
    rm -rf "$work/start"; cp -a "$work/prepared" "$work/start"
    begin=$(date +%s%N)
    serve "$work/start" "$work/start.sock" 2>/dev/null &
    agent_pid=$!
    wait_for "$work/start.sock"
    starts+=($(( ($(date +%s%N) - begin) / 1000000 )))
    kill -TERM "$agent_pid"; wait "$agent_pid" || true; agent_pid=""
done
start_ms=$(printf '%s\n' "${starts[@]}" | sort -n | sed -n 3p)

# 4. Peak RSS under load: 64 clients for 5 s. The high-water mark is reset once the agent answers (clear_refs 5),
# so that the unsealing's Argon2id memory, freed before serving, is reported apart.
cc -O2 -pthread -o "$work/loadgen" bench/kit/loadgen.c -lsecp256k1 -lcrypto
msg="$work/close.txt"
rm -rf "$work/load"; cp -a "$work/prepared" "$work/load"
setsid "$bin/custodian" serve --socket "$work/load.sock" --key-file "$work/key" --policy "$work/policy.toml" \
    --passphrase-file "$work/passphrase" --state-dir "$work/load" 2>/dev/null &
agent_pid=$!
wait_for "$work/load.sock"
startup_kib=$(awk '/VmHWM/ {print $2}' "/proc/$agent_pid/status")
echo 5 >"/proc/$agent_pid/clear_refs"
"$work/loadgen" --socket "$work/load.sock" --clients 64 --seconds 5 --message-file "$msg" >"$work/load.txt" 2>&1 || true
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$agent_pid/status")
kill -TERM "$agent_pid"; wait "$agent_pid" || true; agent_pid=""

mkdir -p bench/results
{
    echo "# custodian benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) vCPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), kernel $(uname -r)."
    echo "Command: bench/run.sh $*"
    echo
    cat "$work/compare.md"
    echo
    echo "## Without durability: custodian's log on tmpfs beside the ceiling without sync (same run)"
    echo
    sed -n '/^| clients/,$p' "$work/compare-tmpfs.md"
    echo
    echo "## Other figures (same run)"
    echo
    echo "- Keccak-256 of 500 bytes: Swift $(echo "$swift_keccak" | sed 's/.*, //'), C (bench kit) $(echo "$c_keccak" | sed 's/.*, //')"
    echo "- start-up, exec to first answer with the key unsealed (interactive Argon2id): median ${start_ms} ms of 5"
    echo "- peak RSS under 64 clients for 5 s (high-water mark reset after start-up): $((rss_kib / 1024)) MiB; before that, start-up peaked at $((startup_kib / 1024)) MiB (the interactive Argon2id's 64 MiB, freed before serving)"
    if [ -f bench/results/restart-1000000.txt ]; then
        echo "- restart with a million records (bench/restart.sh, an earlier run):"
        sed -n 's/^  /  - /p' bench/results/restart-1000000.txt
    fi
} >bench/results/latest.md
echo "wrote bench/results/latest.md"
