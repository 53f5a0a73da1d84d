#!/usr/bin/env bash
# Free memory at micro-batch 1 with train.recompute_cheap_ops: "auto" under transformers+PEFT's 19.2 GiB with the
# checkpointed inputs offloaded, next to Unsloth and the step floor in the same call (compare.sh).
#   here:   the pack of 2026-12-03_cheap_recompute_bs4.sh; mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_cheap_recompute_bs1.sh   (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
BS=1 STEPS=8 PEERS=unsloth EXACT=0 ENGINE_S=150 MAX_MEMORY=19.2 \
  ENGINE_SETTINGS="auto:ckpt-auto-19.2-offload-cheap:train.offload_activations=true,train.recompute_cheap_ops=true auto:ckpt-auto-19.2-offload:train.offload_activations=true" \
  OUT=$OUT/bs1 bash bench/train_step_gpu/compare.sh 2>&1 | grep -vE "^\s*$" | tail -40
grep -h "recompute\|checkpointing" /tmp/engine_bench_ckpt-auto*/engine_run.log 2>/dev/null | head -6 | cut -c1-300
echo "=== done $(date +%T)"
