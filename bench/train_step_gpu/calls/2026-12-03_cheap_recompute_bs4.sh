#!/usr/bin/env bash
# 1. The new CUDA tests: pp and layers at world 1 (issue 17), tp for comparison, and cuda_train_step_test
#    (train.recompute_cheap_ops gives the same bits in bf16).
# 2. Free memory at micro-batch 4 with train.recompute_cheap_ops: "auto" under transformers+PEFT's 32.6 GiB, with
#    and without offload, next to Unsloth and the step floor in the same call (compare.sh).
#   here:   ENGINE_PACK_TESTS="pp_cuda_test layers_cuda_test tp_cuda_test cuda_train_step_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_cheap_recompute_bs4.sh   (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== cuda tests $(date +%T)"
timeout 150 ctest --test-dir build -R "^(pp|layers|tp)_cuda_test$|^cuda_train_step_test$" --output-on-failure 2>&1 |
  grep -E "Failure|Expected|Which|actual|FAILED|Passed|Skipped|worst|tests passed|error" | head -40
BS=4 STEPS=6 PEERS=unsloth EXACT=0 ENGINE_S=150 MAX_MEMORY=32.6 \
  ENGINE_SETTINGS="auto:ckpt-auto-32.6-offload-cheap:train.offload_activations=true,train.recompute_cheap_ops=true auto:ckpt-auto-32.6-cheap:train.recompute_cheap_ops=true" \
  OUT=$OUT/bs4 bash bench/train_step_gpu/compare.sh 2>&1 | grep -vE "^\s*$" | tail -40
grep -h "recompute\|checkpointing" /tmp/engine_bench_ckpt-auto*/engine_run.log 2>/dev/null | head -6 | cut -c1-300
echo "=== done $(date +%T)"
