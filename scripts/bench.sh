#!/usr/bin/env bash
# Runs the Nexmark benchmark (in memory and from a JSON lines file, 1 and 2 workers,
# median of 3 runs, each in a fresh process) and the peak-memory probe, and keeps the
# raw output under bench/runs/<date>-<machine>/. Pass extra flags to the runner, e.g.
# `scripts/bench.sh --events 2000000`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
cargo build --release -p sluice-bench --locked
runner="$CARGO_TARGET_DIR/release/nexmark"
out="bench/runs/$(date -u +%Y-%m-%d)-$(nproc)cores"
mkdir -p "$out"
git rev-parse --short HEAD > "$out/commit" 2>/dev/null || true
grep -m1 "model name" /proc/cpuinfo > "$out/machine" || true
"$runner" --events 8000000 --workers 1,2 --runs 5 --mode both --data-dir "${CARGO_TARGET_DIR}/bench-data" "$@" | tee "$out/nexmark.md"
"$runner" --memory | tee "$out/memory.md"
