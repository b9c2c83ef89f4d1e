#!/usr/bin/env bash
# The strict reader's worst case (issue: "Hostile clients and careless files"): a 64 KiB line of as many distinct
# keys as fit, against an ordinary 64 KiB request (600 allocations), both parsed in full by the same reader.
# Goal: within 3 × (the end-to-end test keeps a margin: 10 ×). Writes bench/results/parse-keys.txt.
#
#   bench/parse.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
swift build -c release --product custodian-bench >/dev/null
{
    printf 'custodian strict reader, worst case against an ordinary line (%s, %s cores, %s)\n' "$(date +%F)" \
        "$(nproc)" "$(uname -m)"
    for round in 1 2 3; do .build/release/custodian-bench parse; done
} | tee bench/results/parse-keys.txt
