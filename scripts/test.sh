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

step "tests (unit, integration, property, end-to-end)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --all-features --locked --no-fail-fast
else
    cargo test --workspace --all-features --locked --no-fail-fast --lib --bins --tests
fi

step "crash test: jobs killed with SIGKILL 10 times each (after checkpoints and savepoints, restarted at 1, 2 or 4 workers, and during the final commit), output exactly once (heap, on-disk state), then at least once"
cargo build --workspace --bins --locked --quiet
"$CARGO_TARGET_DIR/debug/crash-test" --kills 10 --work "$CARGO_TARGET_DIR/crash-test"
"$CARGO_TARGET_DIR/debug/crash-test" --kills 10 --on-disk --work "$CARGO_TARGET_DIR/crash-test-on-disk"
# At least once: q7 (maxima, which replayed records cannot change) holds every line.
"$CARGO_TARGET_DIR/debug/crash-test" --kills 10 --jobs q7 --delivery at-least-once --work "$CARGO_TARGET_DIR/crash-test-alo"

step "doc tests"
cargo test --workspace --all-features --locked --doc

step "docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked --quiet
