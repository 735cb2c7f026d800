#!/usr/bin/env bash
# Installs what is missing, then runs every test of the workspace.
# Tests build in release mode so tests and benchmarks share one build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --release --locked
# The benchmark must keep working: a small run (figures at 1M extents: see README).
cargo bench -p cairn-sched --bench core --locked -- --extents 20000
