#!/usr/bin/env bash
# The PostgreSQL ledger beside the local one, in one run: durable req/s and p50 of the kit's v0 close (an identical
# retry of a closed session: the full path, and a ledger that does not grow) at 1 and 16 clients, for
#   local      one agent, the ledger in its state directory (the baseline of each round)
#   pg-1       one agent, the ledger in PostgreSQL (a throwaway server from scripts/postgres, on a Unix socket)
#   pg-2       two agents of the key on that database, the clients split between them (1+1 and 8+8), both loaded at
#              once; their req/s summed, p50 the mean of the two
# in alternating rounds (local first, then the two, the order reversed every other round), so that all see the same
# moments of a noisy host; each figure is reported as the median over the rounds of that round's ratio to local.
#
#   bench/ledger.sh                  6 rounds of 3 s per setup and client count (about 4 minutes)
#   ROUNDS=10 SECONDS_EACH=4 bench/ledger.sh
#
# Also reported: where a pg-1 batch's time goes (the agent's CPU per request, and PostgreSQL's: its backends' CPU
# per request from /proc), and the database's own commit cost (pg_test_fsync's fdatasync figure for its disk).
# Writes bench/results/ledger.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bench_begin ledger
scripts/setup --postgres
bench_prepare
rounds=${ROUNDS:-6}
each=${SECONDS_EACH:-3}
# Outside $work (mode 0700): the server runs as the postgres user.
pg=$(mktemp -d /tmp/custodian-ledger-pg.XXXXXX)
url=$(scripts/postgres start "$pg")
pg_cleanup() {
    scripts/postgres stop "$pg" >/dev/null 2>&1 || true
    rm -rf "$pg"
}
trap 'pg_cleanup; bench_cleanup' EXIT

declare -A pids
serve() { # serve NAME [--ledger-url URL]: starts an agent on $work/NAME.sock with state $work/NAME
    "$bin/custodian" serve --socket "$work/$1.sock" --key-file "$work/key" --policy "$work/policy.toml" \
        --passphrase-file "$work/passphrase" --state-dir "$work/$1" "${@:2}" 2>"$work/$1.log" &
    pids[$1]=$!
    until "$bin/custodian" status --socket "$work/$1.sock" >/dev/null 2>&1; do sleep 0.01; done
}
sign() { "$bin/custodian" sign --socket "$work/$1.sock" --file "$2" >/dev/null; }
close_once="$work/close-once.json"
sed 's/{{id}}/1/; s/{{ts}}/1767225600000/' "$work/close.txt" >"$close_once"
# The kit's session, created (its V1 create) and closed once, in each ledger.
serve local
sign local "$work/v1.json"
sign local "$close_once"
serve pg1 --ledger-url "$url"
serve pg2 --ledger-url "$url"
sign pg1 "$work/v1.json"
sign pg2 "$close_once"

cc -O2 -pthread -o "$work/loadgen" bench/kit/loadgen.c -lsecp256k1 -lcrypto
backend_ticks() { # the CPU ticks of every PostgreSQL backend serving the agents
    local total=0 pid
    for pid in $(pgrep -f "postgres: .* custodian "); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
agent_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() { # load NAME CLIENTS OUT: one loadgen window on one agent, its JSON in OUT
    "$work/loadgen" --socket "$work/$1.sock" --clients "$2" --seconds "$each" --warmup 1 --json \
        --message-file "$work/close.txt" >"$3"
}
field() { python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); assert r["errors"]==0, r; print(r[sys.argv[2]])' "$@"; }
hz=$(getconf CLK_TCK)
declare -A rps p50 ratio lat_ratio cpu_agent cpu_db
run() { # run SETUP CLIENTS: prints "rps p50"
    local before_a before_d after_a after_d
    case "$1" in
    local)
        load local "$2" "$work/w.json"
        echo "$(field "$work/w.json" rps) $(field "$work/w.json" p50_us)"
        ;;
    pg-1)
        before_a=$(agent_ticks "${pids[pg1]}")
        before_d=$(backend_ticks)
        load pg1 "$2" "$work/w.json"
        after_a=$(agent_ticks "${pids[pg1]}")
        after_d=$(backend_ticks)
        local r
        r=$(field "$work/w.json" rps)
        python3 -c "
r=$r; n=r*($each+1)
print(r, $(field "$work/w.json" p50_us), round(($after_a-$before_a)/$hz*1e6/n,1), round(($after_d-$before_d)/$hz*1e6/n,1))"
        ;;
    pg-2)
        local half=$(($2 > 1 ? $2 / 2 : 1))
        load pg1 "$half" "$work/w1.json" &
        local first=$!
        load pg2 "$half" "$work/w2.json"
        wait "$first"
        python3 -c "print($(field "$work/w1.json" rps) + $(field "$work/w2.json" rps), ($(field "$work/w1.json" p50_us) + $(field "$work/w2.json" p50_us)) / 2)"
        ;;
    esac
}
setups=(local pg-1 pg-2)
for clients in 1 16; do
    for round in $(seq 1 "$rounds"); do
        order=(local pg-1 pg-2)
        if [ $((round % 2)) = 0 ]; then order=(pg-2 pg-1 local); fi
        declare -A this_r=() this_p=()
        for setup in "${order[@]}"; do
            read -r r p ca cd < <(run "$setup" "$clients")
            rps[$setup/$clients]+="$r "
            p50[$setup/$clients]+="$p "
            this_r[$setup]=$r
            this_p[$setup]=$p
            if [ "$setup" = pg-1 ]; then
                cpu_agent[$clients]+="$ca "
                cpu_db[$clients]+="$cd "
            fi
        done
        for setup in "${setups[@]}"; do
            ratio[$setup/$clients]+="$(python3 -c "print(${this_r[$setup]}/${this_r[local]})") "
            lat_ratio[$setup/$clients]+="$(python3 -c "print(${this_p[$setup]}/${this_p[local]})") "
        done
    done
done
for name in local pg1 pg2; do kill -TERM "${pids[$name]}"; wait "${pids[$name]}" || true; done
"$bin/custodian" audit verify --ledger-url "$url" "$work/pg1" "$work/pg2" >"$work/verify.txt"
fsync_line=$(/usr/lib/postgresql/*/bin/pg_test_fsync -s 2 -f "$pg/fsync.test" 2>/dev/null | grep -m1 -E '^\s+fdatasync\s' | awk '{print $2, $3, $4, $5}' || true)

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mkdir -p bench/results
{
    echo "# The PostgreSQL ledger beside the local one (bench/ledger.sh)"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, commit $(git rev-parse --short HEAD); $rounds rounds of ${each} s per"
    echo "setup and client count, interleaved; durable, release build; PostgreSQL $(psql --version | awk '{print $3}')"
    echo "on a Unix socket, on the same host and disk. Ratios: the median over the rounds of each round's figure ÷ the"
    echo "local ledger's in that round. pg-2: two agents, the clients split between them, req/s summed."
    echo
    echo "| clients | setup | req/s | p50 µs | req/s ÷ local | p50 ÷ local p50 |"
    echo "|---|---|---|---|---|---|"
    for clients in 1 16; do
        for setup in "${setups[@]}"; do
            r=$(echo "${rps[$setup/$clients]}" | median)
            p=$(echo "${p50[$setup/$clients]}" | median)
            q=$(echo "${ratio[$setup/$clients]}" | median)
            l=$(echo "${lat_ratio[$setup/$clients]}" | median)
            shown=$([ "$setup" = pg-2 ] && [ "$clients" = 1 ] && echo "1+1" || ([ "$setup" = pg-2 ] && echo "8+8" || echo "$clients"))
            echo "| $shown | $setup | $r | $p | $(python3 -c "print(f'{$q:.2f}')") | $(python3 -c "print(f'{$l:.2f}')") |"
        done
    done
    echo
    echo "Where pg-1's time goes, per request (medians): the agent's CPU (user + system) and PostgreSQL's backends' CPU:"
    echo
    for clients in 1 16; do
        echo "- $clients client(s): agent $(echo "${cpu_agent[$clients]}" | median) µs, PostgreSQL $(echo "${cpu_db[$clients]}" | median) µs"
    done
    echo "- this disk's fdatasync (pg_test_fsync, 8 kB writes): ${fsync_line:-not measured}"
    echo "- audit verify --ledger-url of both agents' logs after the run: $(cat "$work/verify.txt")"
    echo
    echo "Per round, req/s:"
    echo
    for key in $(printf '%s\n' "${!rps[@]}" | sort); do echo "- $key: ${rps[$key]}"; done
} | tee bench/results/ledger.md
