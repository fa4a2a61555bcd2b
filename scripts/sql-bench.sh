#!/usr/bin/env bash
# The SQL benchmark: Nexmark queries over JSON lines files of 1 M and 3 M events, run
# side by side, interleaved, RUNS times each: Sluice SQL (`sluice run`) at 1 and 2
# workers, the typed API (the nexmark runner) at 1 and 2 workers, and DuckDB as a
# batch job (2 threads). A rate is the marginal one: 2 M events divided by the
# difference of the 3 M and 1 M runs' times (the median of each), which removes
# start-up. Raw times and the table go under bench/runs/<date>-sql/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
RUNS="${RUNS:-3}"
QUERIES="${QUERIES:-q0 q1 q2 q5t}"
cargo build --release --locked -p sluice-cli -p sluice-bench
sluice="$CARGO_TARGET_DIR/release/sluice"
runner="$CARGO_TARGET_DIR/release/nexmark"
data="$CARGO_TARGET_DIR/bench-data"
tools="$HOME/.cache/sluice/tools/duckdb"
mkdir -p "$data" "$tools"
if ! PYTHONPATH="$tools" python3 -c "import duckdb" 2>/dev/null; then
    python3 -m pip install --quiet --target "$tools" duckdb
fi
out="bench/runs/$(date -u +%Y-%m-%d)-sql"
mkdir -p "$out"
git rev-parse --short HEAD > "$out/commit" 2>/dev/null || true
grep -m1 "model name" /proc/cpuinfo > "$out/machine" || true
for n in 1000000 3000000; do
    [ -f "$data/nexmark-$n.jsonl" ] || "$sluice" generate --events "$n" --output "$data/nexmark-$n.jsonl"
done

seconds() { local start end; start=$(date +%s.%N); "$@" > /dev/null; end=$(date +%s.%N); echo "$end - $start" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

raw="$out/raw.txt"
: > "$raw"
for query in $QUERIES; do
    for n in 1000000 3000000; do
        sed "s|EVENTS_FILE|$data/nexmark-$n.jsonl|" bench/sql/file-tables.sql > "$data/tables-$n.sql"
    done
    job="examples/nexmark/$query.sql"
    [ -f "$job" ] || job="bench/sql/$query.sql"
    for run in $(seq "$RUNS"); do
        for n in 1000000 3000000; do
            for w in 1 2; do
                echo "$query sql w$w $n $(seconds "$sluice" run --init "$data/tables-$n.sql" "$job" --parallelism "$w")" >> "$raw"
                case "$query" in q0|q1|q2)
                    echo "$query typed w$w $n $(seconds "$runner" --single "$query:file:$w" --events "$n" --data-dir "$data")" >> "$raw";;
                esac
            done
            echo "$query duckdb w2 $n $(PYTHONPATH="$tools" python3 bench/sql/duckdb_bench.py "$query" "$data/nexmark-$n.jsonl")" >> "$raw"
        done
    done
done

{
    echo "| query | engine | workers | 1 M (s) | 3 M (s) | marginal rate (M events/s) |"
    echo "|---|---|---|---|---|---|"
    for query in $QUERIES; do
        for engine in sql typed duckdb; do
            for w in w1 w2; do
                small=$(awk -v q="$query" -v e="$engine" -v w="$w" '$1==q && $2==e && $3==w && $4==1000000 {print $5}' "$raw" | median)
                large=$(awk -v q="$query" -v e="$engine" -v w="$w" '$1==q && $2==e && $3==w && $4==3000000 {print $5}' "$raw" | median)
                [ -n "$small" ] && [ -n "$large" ] || continue
                rate=$(echo "scale=3; 2 / ($large - $small)" | bc)
                echo "| $query | $engine | ${w#w} | $small | $large | $rate |"
            done
        done
    done
} | tee "$out/sql.md"
