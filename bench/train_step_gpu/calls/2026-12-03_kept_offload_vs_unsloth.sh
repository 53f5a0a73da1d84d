#!/usr/bin/env bash
# 1. Free memory at micro-batch 4 with train.offload_kept_blocks (prefetch fixed to 4 blocks ahead): "auto" under
#    transformers+PEFT's 32.6 GiB, next to Unsloth and the step floor in the same call (compare.sh).
# 2. QLoRA at 32k tokens after the decoder's locals change (commit 9e21921), engine alone, memory profile.
#   here:   ENGINE_PACK_TESTS="cuda_train_step_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_kept_offload_vs_unsloth.sh   (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
S=train.offload_activations=true,train.recompute_cheap_ops=true
BS=4 STEPS=6 PEERS=unsloth EXACT=0 ENGINE_S=120 MAX_MEMORY=32.6 \
  ENGINE_SETTINGS="auto:ckpt-auto-32.6-kept11:$S,train.offload_kept_blocks=11 auto:ckpt-auto-32.6-kept10:$S,train.offload_kept_blocks=10" \
  OUT=$OUT/bs4 bash bench/train_step_gpu/compare.sh 2>&1 | grep -vE "^\s*$" | tail -30
grep -h "checkpointing auto" /tmp/engine_bench_ckpt-auto*/engine_run.log 2>/dev/null | cut -c1-200
echo "=== qlora 32k after locals $(date +%T)"
ENGINE_PROFILE_MEMORY=1 timeout 150 python3 bench/train_step_gpu/bench.py --model-dir /tmp/qwen7b_peer_random --recipe recipes/qwen7b_qlora.toml \
  --set optimizer.plugin=adamw --bs 1 --seq 32768 --steps 2 --warmup 1 --checkpointing true \
  --set train.offload_activations=true --set train.deterministic=false --label qlora32k-locals --out "$OUT/results_32k.jsonl" \
  --work /tmp/eb_l32k > /tmp/eb_l32k.out 2>&1
grep -E "RESULT|bench:" /tmp/eb_l32k.out | sed -E 's/"losses".*//' | cut -c1-450
grep -A8 "memory profile over" /tmp/eb_l32k/engine_run.log | cut -c1-200 || tail -5 /tmp/eb_l32k/engine_run.log
echo "=== done $(date +%T)"
