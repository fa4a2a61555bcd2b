#!/usr/bin/env bash
# Two builds of `sluice` side by side on the SQL benchmark's files: BEFORE (a binary
# kept from an earlier build) and the release build of the working tree, interleaved,
# RUNS times each, on the 1 M and 3 M event files (those of scripts/sql-bench.sh) at
# WORKERS workers, each writing a directory of JSON lines. A rate is the marginal one
# (2 M events over the difference of the two files' median times). Raw times and the
# table go under bench/runs/<date>-sql-ab/.
#
#     cp ~/.cache/sluice/target/release/sluice ~/.cache/sluice/tools/sluice-before  # before a change
#     BEFORE=~/.cache/sluice/tools/sluice-before QUERIES="q3 q5" scripts/sql-ab.sh   # after it
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
RUNS="${RUNS:-3}"
QUERIES="${QUERIES:-q1 q3 q5 q7 q8}"
WORKERS="${WORKERS:-2}"
before="${BEFORE:?BEFORE names the binary to compare with}"
cargo build --release --locked -p sluice-cli
after="$CARGO_TARGET_DIR/release/sluice"
data="$CARGO_TARGET_DIR/bench-data"
mkdir -p "$data"
for n in 1000000 3000000; do
    [ -f "$data/nexmark-$n.jsonl" ] || "$after" generate --events "$n" --output "$data/nexmark-$n.jsonl"
    sed "s|EVENTS_FILE|$data/nexmark-$n.jsonl|" bench/sql/file-tables.sql > "$data/tables-$n.sql"
done
out="bench/runs/$(date -u +%Y-%m-%d)-sql-ab"
mkdir -p "$out"
git rev-parse --short HEAD > "$out/commit" 2>/dev/null || true
grep -m1 "model name" /proc/cpuinfo > "$out/machine" || true
raw="$out/raw.txt"
: > "$raw"
seconds() { local start end; start=$(date +%s.%N); "$@" > /dev/null || return 1; end=$(date +%s.%N); echo "$end - $start" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for query in $QUERIES; do
    format=json
    case "$query" in q4|q9|q15|q16|q17|q18|q19) format=debezium-json;; esac
    job="$data/$query-ab-job.sql"
    sed "s|'connector' = 'blackhole'|'connector' = 'filesystem', 'path' = '$data/out', 'format' = '$format'|" \
        "examples/nexmark/$query.sql" > "$job"
    for run in $(seq "$RUNS"); do
        for n in 1000000 3000000; do
            for build in before after; do
                binary=$before
                [ "$build" = after ] && binary=$after
                rm -rf "$data/out"
                time=$(seconds "$binary" run --init "$data/tables-$n.sql" "$job" --parallelism "$WORKERS") \
                    || { echo "failed: $query $build $n" >&2; exit 1; }
                echo "$query $build $n $time" >> "$raw"
            done
        done
    done
done
{
    echo "| query | build | workers | 1 M (s) | 3 M (s) | marginal rate (M events/s) |"
    echo "|---|---|---|---|---|---|"
    for query in $QUERIES; do
        for build in before after; do
            small=$(awk -v q="$query" -v b="$build" '$1==q && $2==b && $3==1000000 {print $4}' "$raw" | median)
            large=$(awk -v q="$query" -v b="$build" '$1==q && $2==b && $3==3000000 {print $4}' "$raw" | median)
            rate=$(echo "scale=3; 2 / ($large - $small)" | bc)
            echo "| $query | $build | $WORKERS | $small | $large | $rate |"
        done
    done
} | tee "$out/ab.md"
