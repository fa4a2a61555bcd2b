#!/usr/bin/env bash
# Runs the embedded log's fuzz targets (fuzz/: a segment's bytes, a sealed segment's
# index and producer snapshot) for SECONDS each (default 60), with cargo fuzz on the
# nightly toolchain; cargo-fuzz is installed into ~/.cache/sluice/tools if missing.
# The same harnesses run on random bytes in the test suite (crates/sluice-log/tests/partition.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
tools="$HOME/.cache/sluice/tools"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/fuzz-target}"
if ! [ -x "$tools/bin/cargo-fuzz" ]; then
    cargo install --locked --root "$tools" cargo-fuzz
fi
export PATH="$tools/bin:$PATH"
for target in segment index; do
    echo "==> fuzz $target for ${seconds}s"
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" -- -max_total_time="$seconds" -max_len=65536
done
