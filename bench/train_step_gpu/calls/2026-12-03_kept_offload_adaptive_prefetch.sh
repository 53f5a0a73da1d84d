#!/usr/bin/env bash
# Free memory at micro-batch 4 with train.offload_kept_blocks after the prefetch change (as many offloaded blocks
# brought back ahead as backward has finished), next to Unsloth and the step floor in the same call.
#   here:   ENGINE_PACK_TESTS="cuda_train_step_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_kept_offload_adaptive_prefetch.sh   (carry .device, .peers)
set -uo pipefail
echo "=== cuda_train_step_test $(date +%T)"
timeout 60 ctest --test-dir build -R "^cuda_train_step_test$" --output-on-failure 2>&1 | grep -E "Failure|FAILED|Passed|tests passed" | head
S=train.offload_activations=true,train.recompute_cheap_ops=true
BS=4 STEPS=6 PEERS=unsloth EXACT=0 ENGINE_S=120 MAX_MEMORY=32.6 \
  ENGINE_SETTINGS="auto:ckpt-auto-32.6-kept11:$S,train.offload_kept_blocks=11 auto:ckpt-auto-32.6-kept12:$S,train.offload_kept_blocks=12" \
  OUT=$OUT/bs4 bash bench/train_step_gpu/compare.sh 2>&1 | grep -vE "^\s*$|^step " | tail -14
grep -h "checkpointing auto" /tmp/engine_bench_ckpt-auto*/engine_run.log 2>/dev/null | cut -c1-200
echo "=== done $(date +%T)"
