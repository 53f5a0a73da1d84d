#!/usr/bin/env bash
# The engine's QLoRA at 128k tokens (train.deterministic = false), engine alone: MFU against the GEMM ceiling
# the run measures. Packed with ENGINE_PACK_TESTS="cuda_attention_test" scripts/device/pack.sh; carry [".device"].
# Run with: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-02_qlora_128k.sh
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
B="python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml --set optimizer.plugin=adamw --out $OUT/results.jsonl"
echo "=== qlora128k-nondet $(date +%T)"
timeout 420 $B --label qlora128k-nondet --work /tmp/eb_128k --bs 1 --seq 131072 --steps 1 --warmup 1 --checkpointing true \
  --set train.offload_activations=true --set train.deterministic=false --timeout 400 2>&1 | grep -E "RESULT|bench:|Error|error" | sed -E 's/"losses".*//' | cut -c1-700
grep -E "warn|error|out of memory" /tmp/eb_128k/engine_run.log | head -3 | cut -c1-300
echo "=== done $(date +%T)"
