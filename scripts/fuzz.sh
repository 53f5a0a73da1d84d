#!/usr/bin/env bash
# Runs one libFuzzer target for SECONDS (default 30): builds it with clang, ASan and UBSan into build-fuzz/
# (the engine libraries it needs; the recipe target loads the plugins of the regular build, ./build or
# ./build-cpu, through ENGINE_PLUGIN_PATH when there is one, so their options are parsed too), then fuzzes
# from a copy of its seed corpus fuzz/corpus/TARGET (new inputs stay in build-fuzz/corpus/TARGET; a crash
# is written to build-fuzz/crash-TARGET-*, and the script fails).
#   scripts/fuzz.sh TARGET [SECONDS]     TARGET: safetensors_header tokenizer recipe dataset_line
#                                                chat_template checkpoint_state plugin_elf | all
#   scripts/fuzz.sh build                builds every target, runs none (ctest's fuzz_build)
# Prints the number of inputs tried. Extra libFuzzer flags: FUZZ_ARGS="-max_len=4096". The build folder:
# ENGINE_FUZZ_BUILD_DIR (ctest uses BUILD/fuzz); build jobs: ENGINE_FUZZ_JOBS (default: all cores);
# ENGINE_FUZZ_NO_BUILD=1 runs what is built without building.
# Without clang++ (Debian package clang, scripts/setup.sh installs it) it prints why and exits 77, the code
# ctest reads as "skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(safetensors_header tokenizer recipe dataset_line chat_template checkpoint_state plugin_elf)
target=${1:?usage: scripts/fuzz.sh TARGET [SECONDS] (TARGET: ${targets[*]} | all)}
seconds=${2:-30}
if [[ $target == all ]]; then
  failed=0
  for t in "${targets[@]}"; do "$0" "$t" "$seconds" || failed=1; done
  exit $failed
fi
[[ $target == build || " ${targets[*]} " == *" $target "* ]] ||
  { echo "fuzz.sh: unknown target '$target' (${targets[*]} | all | build)" >&2; exit 2; }
if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: skipped: clang++ is not installed (the libFuzzer targets need clang; apt-get install clang)"
  exit 77
fi
build=${ENGINE_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${ENGINE_FUZZ_JOBS:-$(nproc)}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
if [[ ! -f $build/build.ninja ]]; then
  flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENGINE_CUDA=OFF \
    -DENGINE_BUILD_TESTS=OFF -DENGINE_FUZZ=ON -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
fi
if [[ $target == build ]]; then
  start=$(date +%s)
  cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}" >"$build/build-all.log" 2>&1 ||
    { tail -n 30 "$build/build-all.log" >&2; echo "fuzz.sh: building the fuzz targets failed" >&2; exit 1; }
  echo "fuzz.sh: built ${targets[*]/#/fuzz_} into $build in $(($(date +%s) - start)) s"
  exit 0
fi
if [[ -z ${ENGINE_FUZZ_NO_BUILD:-} ]]; then  # ctest's fuzz_build built them (parallel ninjas would collide)
  cmake --build "$build" -j "$jobs" --target "fuzz_$target" >"$build/build-$target.log" 2>&1 ||
    { tail -n 30 "$build/build-$target.log" >&2; echo "fuzz.sh: building fuzz_$target failed" >&2; exit 1; }
fi
corpus="$build/corpus/$target"
mkdir -p "$corpus"
cp -n fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
log="$build/fuzz-$target.log"
if [[ -z ${ENGINE_PLUGIN_PATH:-} ]]; then
  for d in build/lib/engine/plugins build-cpu/lib/engine/plugins; do
    [[ -d $d ]] && { export ENGINE_PLUGIN_PATH=$PWD/$d; break; }
  done
fi
# shellcheck disable=SC2086
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 "$build/bin/fuzz_$target" "$corpus" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$build/crash-$target-" ${FUZZ_ARGS:-} >"$log" 2>&1 && rc=0 || rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
if [[ $rc -ne 0 ]]; then
  echo "fuzz $target: FAILED after ${runs:-?} inputs (exit $rc); see $log and $build/crash-$target-*" >&2
  grep -m5 -E "ERROR|SUMMARY|runtime error|terminate|Assertion" "$log" >&2 || true
  exit 1
fi
echo "fuzz $target: ${runs:-?} inputs in ${seconds}s, no crash ($(ls "$corpus" | wc -l) in the corpus)"
