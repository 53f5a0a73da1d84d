#!/usr/bin/env bash
# Where QLoRA's long-context step reaches its allocator peak (ENGINE_PROFILE_MEMORY=1, nothing synchronized):
# Qwen2.5-7B shape, 32k tokens, every block checkpointed and offloaded, train.deterministic = false, as in
# 2026-12-03_qlora_long_context.sh (17.25 GiB against Unsloth's 15.55).
#   here:   scripts/device/pack.sh (any recent pack)
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_qlora_32k_memory_profile.sh   (carry .device)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ENGINE_PROFILE_MEMORY=1 timeout 240 python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml \
  --set optimizer.plugin=adamw --bs 1 --seq 32768 --steps 2 --warmup 1 --checkpointing true \
  --set train.offload_activations=true --set train.deterministic=false --label mem-qlora32k --out "$OUT/results.jsonl" \
  --work /tmp/eb_mem32k > /tmp/eb_mem32k.out 2>&1
grep -E "RESULT" /tmp/eb_mem32k.out | sed -E 's/"losses".*//' | cut -c1-400
grep -A40 "memory profile over" /tmp/eb_mem32k/engine_run.log | cut -c1-220 ||
  { tail -5 /tmp/eb_mem32k.out; tail -8 /tmp/eb_mem32k/engine_run.log; } | cut -c1-300
