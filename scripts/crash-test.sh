#!/usr/bin/env bash
# The long crash test: kills the fraud detection example and Nexmark q5 and q7 with
# SIGKILL at random moments (200 times each by default), restarts them from their
# checkpoints (every 200 ms) and checks that their committed output equals an
# uninterrupted run's, line for line. Release build; the result goes to
# bench/runs/<date>-<machine>/crash-test.txt (state on disk: pass --on-disk). Extra
# flags go to the driver, e.g.
# `scripts/crash-test.sh --kills 50 --jobs q5`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
cargo build --release --locked -p sluice-examples -p sluice-bench -p sluice-cli --bins
out="bench/runs/$(date -u +%Y-%m-%d)-$(nproc)cores"
mkdir -p "$out"
{
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), release build, $(nproc) vCPUs (scripts/crash-test.sh)"
    "$CARGO_TARGET_DIR/release/crash-test" --kills 200 --events 4000000 --transactions 1000000 \
        --work "$CARGO_TARGET_DIR/crash-test-long" "$@"
} | tee "$out/crash-test.txt"
