#!/usr/bin/env bash
# The SQL benchmark: Nexmark queries over JSON lines files of 1 M and 3 M events, run
# side by side, interleaved, RUNS times each: Sluice SQL (`sluice run`) at 1 and 2
# workers, the typed API (the nexmark runner) at 1 and 2 workers, DuckDB as a batch
# job (2 threads), and Apache Flink 2.3 (PyFlink's local mini-cluster, parallelism 1,
# streaming mode). Sluice and Flink run the same files, examples/nexmark/*.sql over
# bench/sql/file-tables.sql, their sink a filesystem table of JSON lines (FLINK=0
# leaves Flink out). A rate is the marginal one: 2 M events divided by the
# difference of the 3 M and 1 M runs' times (the median of each), which removes
# start-up. Raw times and the table go under bench/runs/<date>-sql/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
RUNS="${RUNS:-3}"
QUERIES="${QUERIES:-q0 q1 q2 q3 q4 q5 q7 q8}"
FLINK="${FLINK:-1}"
# SINK=files: every engine writes a directory of JSON lines (the default); SINK=blackhole:
# Sluice and Flink drop the rows (the examples' sink), as the typed API's runner does.
SINK="${SINK:-files}"
cargo build --release --locked -p sluice-cli -p sluice-bench
sluice="$CARGO_TARGET_DIR/release/sluice"
runner="$CARGO_TARGET_DIR/release/nexmark"
data="$CARGO_TARGET_DIR/bench-data"
tools="$HOME/.cache/sluice/tools/duckdb"
flink="$HOME/.cache/sluice/tools/flink-venv"
mkdir -p "$data" "$tools"
if ! PYTHONPATH="$tools" python3 -c "import duckdb" 2>/dev/null; then
    python3 -m pip install --quiet --target "$tools" duckdb
fi
if [ "$FLINK" = 1 ] && ! "$flink/bin/python" -c "import pyflink" 2>/dev/null; then
    python3 -m venv "$flink"
    "$flink/bin/pip" install --quiet "apache-flink==2.3.*"
fi
out="bench/runs/$(date -u +%Y-%m-%d)-sql-$SINK"
mkdir -p "$out"
git rev-parse --short HEAD > "$out/commit" 2>/dev/null || true
grep -m1 "model name" /proc/cpuinfo > "$out/machine" || true
for n in 1000000 3000000; do
    [ -f "$data/nexmark-$n.jsonl" ] || "$sluice" generate --events "$n" --output "$data/nexmark-$n.jsonl"
done

seconds() { local start end; start=$(date +%s.%N); "$@" > /dev/null || return 1; end=$(date +%s.%N); echo "$end - $start" | bc; }
# Appends "LABEL SECONDS" to the raw runs; a failed run stops the benchmark.
record() {
    local label=$1 time; shift
    time=$("$@") || { echo "failed: $label: $*" >&2; exit 1; }
    echo "$label $time" >> "$raw"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

raw="$out/raw.txt"
: > "$raw"
for query in $QUERIES; do
    for n in 1000000 3000000; do
        sed "s|EVENTS_FILE|$data/nexmark-$n.jsonl|" bench/sql/file-tables.sql > "$data/tables-$n.sql"
    done
    example="examples/nexmark/$query.sql"
    [ -f "$example" ] || example="bench/sql/$query.sql"
    # Every engine's sink a directory of JSON lines, emptied before each run: a
    # changelog (debezium-json) for the queries whose results are updating.
    format=json
    case "$query" in q4|q9|q15|q16|q17|q18|q19) format=debezium-json;; esac
    job="$data/$query-job.sql"
    if [ "$SINK" = blackhole ]; then
        cp "$example" "$job"
    else
        sed "s|'connector' = 'blackhole'|'connector' = 'filesystem', 'path' = '$data/out', 'format' = '$format'|" "$example" > "$job"
    fi
    for run in $(seq "$RUNS"); do
        for n in 1000000 3000000; do
            for w in 1 2; do
                rm -rf "$data/out"
                record "$query sql w$w $n" seconds "$sluice" run --init "$data/tables-$n.sql" "$job" --parallelism "$w"
                case "$query" in q0|q1|q2|q3|q4|q5|q7|q8)
                    record "$query typed w$w $n" seconds "$runner" --single "$query:file:$w" --events "$n" --data-dir "$data";;
                esac
            done
            PYTHONPATH="$tools" record "$query duckdb w2 $n" python3 bench/sql/duckdb_bench.py "$query" "$data/nexmark-$n.jsonl"
            if [ "$FLINK" = 1 ]; then
                rm -rf "$data/flink-out"
                record "$query flink w1 $n" seconds "$flink/bin/python" bench/sql/flink_bench.py "$data/tables-$n.sql" "$example" "$data/flink-out" "$format" "$SINK"
            fi
        done
    done
done

{
    echo "| query | engine | workers | 1 M (s) | 3 M (s) | marginal rate (M events/s) |"
    echo "|---|---|---|---|---|---|"
    for query in $QUERIES; do
        for engine in sql typed duckdb flink; do
            for w in w1 w2; do
                small=$(awk -v q="$query" -v e="$engine" -v w="$w" '$1==q && $2==e && $3==w && $4==1000000 {print $5}' "$raw" | median)
                large=$(awk -v q="$query" -v e="$engine" -v w="$w" '$1==q && $2==e && $3==w && $4==3000000 {print $5}' "$raw" | median)
                [ -n "$small" ] && [ -n "$large" ] && [ "$small" != 0 ] || continue
                rate=$(echo "scale=3; 2 / ($large - $small)" | bc)
                echo "| $query | $engine | ${w#w} | $small | $large | $rate |"
            done
        done
    done
} | tee "$out/sql.md"
