#!/usr/bin/env bash
# The free-memory target at micro-batch 4 after the replay and gradient-sum fixes: train.activation_checkpointing =
# "auto" under transformers+PEFT's 32.6 GiB (the memory plan picks the fewest recomputed blocks that fit), with the
# checkpointed inputs offloaded or not, next to Unsloth and the step floor in the same call (compare.sh).
#   here:   scripts/device/pack.sh; mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_free_memory_bs4.sh   (carry .device, .peers)
set -uo pipefail
BS=4 STEPS=6 PEERS=unsloth EXACT=0 ENGINE_S=240 MAX_MEMORY=32.6 \
  ENGINE_SETTINGS="auto:ckpt-auto-32.6-offload:train.offload_activations=true auto:ckpt-auto-32.6 true:ckpt-all-offload:train.offload_activations=true" \
  OUT=$OUT/bs4 bash bench/train_step_gpu/compare.sh 2>&1 | grep -vE "^\s*$" | tail -40
grep -h "recompute\|checkpointing" /tmp/engine_bench_ckpt-auto*/engine_run.log 2>/dev/null | head -6 | cut -c1-300
