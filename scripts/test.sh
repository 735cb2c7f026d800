#!/usr/bin/env bash
# Installs what is missing, then runs every test of the workspace.
# Tests build in release mode so tests and benchmarks share one build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# The benchmark must keep working: a short run (figures at 1M extents: see README).
cargo bench -p cairn-sched --bench core --locked -- --extents 20000

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --tests: unit and integration tests of every crate (the workspace has no doc tests).
cargo test --workspace --release --locked --tests 2>&1 | tee "$log"
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f; exit (p == 0 || f > 0) }' "$log"
