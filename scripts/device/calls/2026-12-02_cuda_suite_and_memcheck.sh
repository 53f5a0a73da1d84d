#!/usr/bin/env bash
# Device call (one H200): every test labelled cuda (the foreach rounding fix, fsdp/zero3 at world 1 among them),
# then compute-sanitizer memcheck over the kernel tests and a short CUDA training run of the engine.
# Packed with: ENGINE_PACK_TESTS="$(ctest --test-dir build -N -L cuda | awk '/Test +#/{print $3}')" scripts/device/pack.sh
# Run with:    scripts/device/run.sh bash scripts/device/calls/2026-12-02_cuda_suite_and_memcheck.sh
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== ctest -L cuda $(date +%T)"
timeout 330 ctest --test-dir build -L cuda --output-on-failure --timeout 200 2>&1 | grep -vE "^\[ *(RUN|OK) " |
  tee "$OUT/ctest_cuda.log" | grep -E "Test +#|tests passed|FAILED|Failure|Expected|Which is|rror" | head -80
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
echo "=== compute-sanitizer: ${cs:-none} $(date +%T)"
[[ -n $cs ]] || exit 0
export ENGINE_TEST_DATA=$PWD/tests/data ENGINE_SHARED_DIR=$PWD/shared ENGINE_PLUGIN_PATH=$PWD/build/lib/engine/plugins \
  ENGINE_BINARY_DIR=$PWD/build ENGINE_SOURCE_DIR=$PWD
for t in cuda_ops_test cuda_foreach_test cuda_elementwise_test cuda_rmsnorm_test cuda_rope_test cuda_softmax_test \
         cuda_reduce_test cuda_embedding_test cuda_nf4_test cuda_dropout_test cuda_gemm_test; do
  timeout 45 "$cs" --tool memcheck --error-exitcode 9 --print-limit 5 "build/bin/$t" > "$OUT/memcheck_$t.log" 2>&1
  echo "memcheck $t: rc=$? $(grep -E 'ERROR SUMMARY|PASSED|FAILED' "$OUT/memcheck_$t.log" | tr '\n' ' ' | cut -c1-200)"
done
echo "=== memcheck engine run $(date +%T)"
timeout 150 "$cs" --tool memcheck --error-exitcode 9 --print-limit 5 build/bin/engine run recipes/tiny_lora.toml \
  --set model.path=/tmp/lm --set train.output_dir=/tmp/mc --set train.max_steps=3 --set train.eval_every=0 \
  --set train.device=cuda --set checkpoint.save_every=3 > "$OUT/memcheck_engine.log" 2>&1
echo "memcheck engine run: rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/memcheck_engine.log")"; tail -3 "$OUT/memcheck_engine.log" | cut -c1-300
echo "=== done $(date +%T)"
