#!/usr/bin/env bash
# Runs the whole test suite: builds ./build if needed (scripts/setup.sh), then ctest. Tests that need a GPU
# (label cuda) skip with a message where none is present. Pass ctest arguments through, e.g. -L unit.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${ENGINE_BUILD_DIR:-build}
scripts/setup.sh
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" "$@"
