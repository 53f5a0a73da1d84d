#!/usr/bin/env bash
# 1. Free memory at micro-batch 1 under transformers+PEFT's 19.2 GiB with train.offload_kept_blocks, next to
#    Unsloth and the step floor in the same call (compare.sh; compare.json).
# 2. compute-sanitizer memcheck over the CUDA training-step tests of the offload paths.
#   here:   ENGINE_PACK_TESTS="cuda_train_step_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_kept_offload_bs1.sh   (carry .device, .peers)
set -uo pipefail
S=train.offload_activations=true,train.recompute_cheap_ops=true
BS=1 STEPS=8 PEERS=unsloth EXACT=0 ENGINE_S=100 MAX_MEMORY=19.2 \
  ENGINE_SETTINGS="auto:ckpt-auto-19.2-offload-cheap:$S auto:ckpt-auto-19.2-kept8:$S,train.offload_kept_blocks=8 auto:ckpt-auto-19.2-kept11:$S,train.offload_kept_blocks=11" \
  OUT=$OUT/bs1 bash bench/train_step_gpu/compare.sh 2>&1 | grep -vE "^\s*$|^step " | tail -14
grep -h "checkpointing auto" /tmp/engine_bench_ckpt-auto*/engine_run.log 2>/dev/null | cut -c1-200
echo "=== compute-sanitizer $(date +%T)"
timeout 120 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 3 build/bin/cuda_train_step_test \
  --gtest_filter='*KeptBlock*:*Offloaded*:*CheapRecompute*' 2>&1 | grep -vE "^\[ *(RUN|OK) " | tail -12; echo "sanitizer rc=${PIPESTATUS[0]}"
echo "=== done $(date +%T)"
