#!/bin/sh
# Instructions per batch of 64 of the ring's claim, publish, take and done
# (callgrind, inclusive), for an ordered stage and a pool:
#   bench/c/instr.sh BUILD_DIR [BATCHES]
set -e
exe="$1/bench/c/ring_instr"
batches="${2:-20000}"
out=$(mktemp)
for kind in ordered pool; do
    valgrind --tool=callgrind --callgrind-out-file="$out" "$exe" "$kind" "$batches" 2>/dev/null
    callgrind_annotate --inclusive=yes "$out" 2>/dev/null |
        awk -v kind="$kind" -v b="$batches" '
            /fe_(claim|publish|take|done) \[/ {
                gsub(",", "", $1); n = $1 / b; total += n
                match($0, /fe_[a-z]+/); printf "%s %s %.1f\n", kind, substr($0, RSTART, RLENGTH), n
            }
            END { printf "%s total %.1f instructions a batch\n", kind, total }'
done
rm -f "$out"
