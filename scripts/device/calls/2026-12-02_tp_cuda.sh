#!/usr/bin/env bash
# Device call (one H200): the tensor-parallel strategy's CUDA path at world 1 (tp_cuda_test: the split
# placement, tp_copy/tp_reduce through NCCL around every projection, the vocabulary-parallel embedding and
# cross-entropy) and the engine-level CUDA tests that run the linear seam and the decoder forward it changed,
# then compute-sanitizer memcheck on a 3-step tp run on the GPU.
# Packed with: ENGINE_PACK_TESTS="cuda_engine_run_test cuda_train_step_test nccl_collectives_test zero3_cuda_test fsdp_cuda_test tp_cuda_test cuda_cross_entropy_test cuda_embedding_test" scripts/device/pack.sh
# Run with:    scripts/device/run.sh bash scripts/device/calls/2026-12-02_tp_cuda.sh
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== ctest $(date +%T)"
timeout 420 ctest --test-dir build -R "cuda_engine_run_test|cuda_train_step_test|nccl_collectives_test|zero3_cuda_test|fsdp_cuda_test|tp_cuda_test|cuda_cross_entropy_test|cuda_embedding_test" \
  --output-on-failure --timeout 300 2>&1 | grep -vE "^\[ *(RUN|OK) " | tee "$OUT/ctest.log" |
  grep -E "Test +#|tests passed|FAILED|Failure|Expected|Which is|rror|worst" | head -80
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
echo "=== memcheck of a tp run: ${cs:-none} $(date +%T)"
[[ -n $cs ]] || exit 0
export ENGINE_PLUGIN_PATH=$PWD/build/lib/engine/plugins
timeout 150 "$cs" --tool memcheck --error-exitcode 9 --print-limit 5 --target-processes all build/bin/engine run \
  recipes/tiny_lora.toml --nproc-per-node 1 --set parallel.plugin=tp --set model.path=/tmp/lm \
  --set train.output_dir=/tmp/mc --set train.max_steps=3 --set train.eval_every=0 --set train.device=cuda \
  --set checkpoint.save_every=3 > "$OUT/memcheck_tp.log" 2>&1
echo "memcheck tp run: rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/memcheck_tp.log" | tr '\n' ' ')"; tail -3 "$OUT/memcheck_tp.log" | cut -c1-300
echo "=== done $(date +%T)"
