#!/usr/bin/env bash
# Device call (one H200): the cuda tests the first call of the day left out (its pack list missed tests #4-#9),
# cuda_foreach_test with its corrected CPU reference, compute-sanitizer memcheck over them and racecheck over
# the kernels with shared memory among them.
# Packed with: ENGINE_PACK_TESTS="cuda_activation_test cuda_adamw8bit_test cuda_adamw_test cuda_attention_test
#   cuda_cast_test cuda_cross_entropy_test cuda_foreach_test" scripts/device/pack.sh
# Run with:    scripts/device/run.sh bash scripts/device/calls/2026-12-02_cuda_rest_and_memcheck.sh
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
tests="cuda_activation_test cuda_adamw8bit_test cuda_adamw_test cuda_attention_test cuda_cast_test cuda_cross_entropy_test cuda_foreach_test"
echo "=== ctest $(date +%T)"
timeout 250 ctest --test-dir build -R "^($(echo $tests | tr ' ' '|'))\$" --output-on-failure --timeout 200 2>&1 |
  grep -vE "^\[ *(RUN|OK) " | tee "$OUT/ctest_rest.log" | grep -E "Test +#|tests passed|FAILED|Failure|Expected|Which is|rror" | head -60
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
[[ -n $cs ]] || { echo "no compute-sanitizer"; exit 0; }
export ENGINE_TEST_DATA=$PWD/tests/data ENGINE_SHARED_DIR=$PWD/shared ENGINE_PLUGIN_PATH=$PWD/build/lib/engine/plugins \
  ENGINE_BINARY_DIR=$PWD/build ENGINE_SOURCE_DIR=$PWD
for t in $tests; do
  timeout 60 "$cs" --tool memcheck --error-exitcode 9 --print-limit 5 "build/bin/$t" > "$OUT/memcheck_$t.log" 2>&1
  echo "memcheck $t: rc=$? $(grep -E 'ERROR SUMMARY|  PASSED|  FAILED' "$OUT/memcheck_$t.log" | tr '\n' ' ' | cut -c1-200)"
done
for t in cuda_attention_test cuda_cross_entropy_test cuda_adamw8bit_test; do
  timeout 60 "$cs" --tool racecheck --error-exitcode 9 --print-limit 5 "build/bin/$t" > "$OUT/racecheck_$t.log" 2>&1
  echo "racecheck $t: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|  PASSED|  FAILED' "$OUT/racecheck_$t.log" | tr '\n' ' ' | cut -c1-200)"
done
echo "=== done $(date +%T)"
