#!/usr/bin/env bash
# Runs every check and test of the workspace, as CI does: formatting, lints, unit,
# integration, property and end-to-end tests, doc tests and docs.
#
# Build output and tools are cached outside the clone (under ~/.cache/sluice) so that
# repeated runs are incremental. The services the tests need are installed and started
# by scripts/services.sh: an S3-compatible object store (moto) for checkpoints in object
# storage; later a Kafka-protocol broker and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "services (S3-compatible object store)"
eval "$(./scripts/services.sh)"

# Every test's outcome is kept, so that the last line counts all of them.
logs="$CARGO_TARGET_DIR/test-logs"
rm -rf "$logs" && mkdir -p "$logs"

step "tests (unit, integration, property, end-to-end)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --all-features --locked --no-fail-fast 2>&1 | tee "$logs/nextest.log"
else
    cargo test --workspace --all-features --locked --no-fail-fast --lib --bins --tests 2>&1 | tee "$logs/cargo-test.log"
fi

step "crash test: jobs killed with SIGKILL 10 times each (after checkpoints and savepoints, restarted at 1, 2 or 4 workers, and during the final commit), output exactly once (heap, on-disk state), then at least once"
cargo build --workspace --bins --all-features --locked --quiet
{
    "$CARGO_TARGET_DIR/debug/crash-test" --kills 10 --work "$CARGO_TARGET_DIR/crash-test"
    "$CARGO_TARGET_DIR/debug/crash-test" --kills 10 --on-disk --work "$CARGO_TARGET_DIR/crash-test-on-disk"
    # At least once: q7 (maxima, which replayed records cannot change) holds every line.
    "$CARGO_TARGET_DIR/debug/crash-test" --kills 10 --jobs q7 --delivery at-least-once \
        --work "$CARGO_TARGET_DIR/crash-test-alo"
} | tee "$logs/crash-test.log"

step "log crash test: a producer of the embedded log killed with SIGKILL 30 times (a sync per batch, interval syncing, transactions), every acknowledged record there once"
"$CARGO_TARGET_DIR/debug/log-crash-test" --kills 30 --work "$CARGO_TARGET_DIR/log-crash-test" | tee "$logs/log-crash-test.log"

step "doc tests"
cargo test --workspace --all-features --locked --doc 2>&1 | tee "$logs/doc-tests.log"

step "docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked --quiet

# One line for everything that ran: the test runner's tests, the doc tests and the
# crash-tested jobs.
summary=$(grep -h "tests run:" "$logs/nextest.log" 2>/dev/null | tail -1 || true)
passed=$(echo "$summary" | grep -oE "[0-9]+ passed" | grep -oE "[0-9]+" || echo 0)
failed=$(echo "$summary" | grep -oE "[0-9]+ failed" | grep -oE "[0-9]+" || echo 0)
read -r results_passed results_failed < <(
    cat "$logs/cargo-test.log" "$logs/doc-tests.log" 2>/dev/null \
        | grep -oE "test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed" \
        | awk '{p += $4; f += $6} END {print p + 0, f + 0}'
)
crash_passed=$(grep -cE "^crash-test: [a-z0-9]+: killed" "$logs/crash-test.log" || true)
crash_failed=$(grep -cE "^crash-test: [a-z0-9]+: FAILED" "$logs/crash-test.log" || true)
log_crash_passed=$(grep -cE "^log crash test passed" "$logs/log-crash-test.log" || true)
echo "$((passed + results_passed + crash_passed + log_crash_passed)) passed, $((failed + results_failed + crash_failed)) failed"
