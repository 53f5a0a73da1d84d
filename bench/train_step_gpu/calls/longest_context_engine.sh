#!/usr/bin/env bash
# The engine's QLoRA at 458,752 tokens, one step, no warm-up (the other half of longest_context_unsloth.sh). From
# 128k (35.45 GiB) and 256k (62.91) its peak grows 0.21 GiB per 1,000 tokens: about 103 GiB here. Offload pins
# the 28 blocks' inputs, 28 x 458,752 x 3,584 x 2 bytes = 92 GB of the machine's 125 GB of host memory, so
# train.keep_attention (which would pin as much again) stays off. Estimated step: ~400 s (the attention's
# tokens-squared work is ~90% of it at this length). Prepared 2026-12-04, not yet run.
#   here:   ENGINE_PACK_TESTS="cuda_nf4_test" scripts/device/pack.sh
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/longest_context_engine.sh   (carry .device)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
free -g | head -2
echo "=== engine qlora448k $(date +%T)"
timeout 580 python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml \
  --set optimizer.plugin=adamw --bs 1 --seq 458752 --steps 1 --warmup 0 --checkpointing true \
  --set train.offload_activations=true --set train.deterministic=false --label qlora448k \
  --out "$OUT/results.jsonl" --work /tmp/eb_448k > /tmp/eb_448k.out 2>&1
echo "rc=$?"
grep -E "RESULT|bench:" /tmp/eb_448k.out | sed -E 's/"losses".*//' | cut -c1-500
grep -iE "out of memory|cannot pin|error" /tmp/eb_448k/engine_run.log | head -3 | cut -c1-300
echo "=== done $(date +%T)"
