#!/usr/bin/env bash
# Device call (one H200): the labelled cuda tests that longest_context_unsloth.sh's pack had no room for (the
# engine-level ones and the multi-GPU ones, which run their world-1 cases here), then compute-sanitizer memcheck
# over the training-step cases that copy on the side stream (offloaded checkpoints, kept attention, kept-block
# offload, cheap recompute): the code of 2026-12-03/04.
#   here:   ENGINE_PACK_TESTS="cuda_activation_test cuda_attention_test cuda_cuda_device_test cuda_engine_run_test
#             cuda_nf4_test cuda_ops_test cuda_train_step_test nccl_collectives_test multi_gpu_test zero3_cuda_test
#             fsdp_cuda_test tp_cuda_test pp_cuda_test layers_cuda_test" scripts/device/pack.sh
#   device: scripts/device/run.sh bash scripts/device/calls/2026-12-04_cuda_rest_and_memcheck.sh   (carry .device)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== ctest $(date +%T)"
re='^(cuda_(activation|attention|cuda_device|engine_run|nf4|ops|train_step)_test|nccl_collectives_test|multi_gpu_test|zero3_cuda_test|fsdp_cuda_test|tp_cuda_test|pp_cuda_test|layers_cuda_test)$'
timeout 200 ctest --test-dir build -R "$re" --output-on-failure --timeout 150 -j2 2>&1 | grep -vE "^\[ *(RUN|OK) " |
  tee "$OUT/ctest_cuda_rest.log" | grep -E "tests passed|FAILED|Failure|Expected|Which is|rror|Not Run|Timeout|Skipped" | head -40
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
echo "=== compute-sanitizer: ${cs:-none} $(date +%T)"
[[ -n $cs ]] || exit 0
export ENGINE_TEST_DATA=$PWD/tests/data ENGINE_SHARED_DIR=$PWD/shared ENGINE_PLUGIN_PATH=$PWD/build/lib/engine/plugins \
  ENGINE_BINARY_DIR=$PWD/build ENGINE_SOURCE_DIR=$PWD
timeout 150 "$cs" --tool memcheck --error-exitcode 9 --print-limit 5 build/bin/cuda_train_step_test \
  --gtest_filter='*Offload*:*Kept*:*Cheap*' > "$OUT/memcheck_train_step.log" 2>&1
echo "memcheck cuda_train_step_test: rc=$? $(grep -E 'ERROR SUMMARY|PASSED|FAILED' "$OUT/memcheck_train_step.log" | tr '\n' ' ' | cut -c1-300)"
echo "=== done $(date +%T)"
