#!/usr/bin/env bash
# Micro-batch 4 with train.recompute_cheap_ops and offload, fewer recomputed blocks than "auto" under 32.6 GiB picks
# (11): 10 and 9, to see what the plan's 8% margin costs. Engine alone (ratio: its own GEMM ceiling in the process).
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_cheap_recompute_bs4_fewer.sh   (carry .device)
set -uo pipefail
B="python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --bs 4 --steps 5 --warmup 2 --out $OUT/results.jsonl"
for n in 10 9; do
  echo "=== ckpt-$n-offload-cheap $(date +%T)"
  timeout 120 $B --label ckpt-$n-offload-cheap --work /tmp/eb_$n --checkpointing $n --set train.offload_activations=true \
    --set train.recompute_cheap_ops=true 2>&1 | grep -E "RESULT|Error|error" | sed -E 's/"losses".*//' | cut -c1-700
done
echo "=== done $(date +%T)"
