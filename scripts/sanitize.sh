#!/usr/bin/env bash
# Builds the CPU suite with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ (gcc, -O1, no CUDA)
# and runs it with ctest; any sanitizer report fails its test (UBSan is made fatal). Arguments go to ctest
# (e.g. -R tokenizer, -L unit). Jobs: ENGINE_SANITIZE_JOBS (default 2; ctest's: ENGINE_SANITIZE_TEST_JOBS,
# default the same).
#   scripts/sanitize.sh                full CPU suite
#   scripts/sanitize.sh -L unit        unit tests only
# The fuzz tests (label fuzz) are left out: they build their own ASan + UBSan targets with clang.
# Leak checking is off (detect_leaks=0): the libraries the engine links (OpenBLAS thread pools, spdlog's
# registry) hold allocations to exit by design.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${ENGINE_SANITIZE_BUILD_DIR:-build-asan}
jobs=${ENGINE_SANITIZE_JOBS:-2}
test_jobs=${ENGINE_SANITIZE_TEST_JOBS:-$jobs}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
# GCC 12 at -O1 with ASan warns maybe-uninitialized inside libstdc++'s <regex> (a false positive in a system
# header); the project's warnings-as-errors would stop the build there, so that one warning stays a warning.
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -Wno-error=maybe-uninitialized"
start=$(date +%s)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" -DENGINE_CUDA=OFF -DENGINE_FUZZ_SECONDS=0 -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j "$jobs"
built=$(date +%s)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0:halt_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" --output-on-failure -j "$test_jobs" -LE cuda "$@"
echo "sanitize: built in $((built - start)) s, tests in $(($(date +%s) - built)) s ($build)"
