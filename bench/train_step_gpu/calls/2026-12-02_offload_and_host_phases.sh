#!/usr/bin/env bash
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
build/bin/cuda_train_step_test --gtest_filter='*Offload*:*Deterministic*' 2>&1 | grep -vE "^\[ *(RUN|OK) " | tail -25
B="python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --steps ${STEPS:-5} --warmup 2 --out $OUT/results.jsonl"
run() { label=$1; shift; echo "=== $label $(date +%T)"; timeout 200 $B --label "$label" --work /tmp/eb_$label "$@" 2>&1 | grep -E "RESULT|bench:|Error|error" | sed -E 's/"losses".*//' | cut -c1-600; grep -iE "checkpointing auto" /tmp/eb_$label/engine_run.log | head -2 | cut -c1-200; }
run bs1-ckpt --bs 1 --checkpointing true
run bs1-ckpt-off --bs 1 --checkpointing true --set train.offload_activations=true
run bs4-ckpt --bs 4 --checkpointing true
run bs4-ckpt-off --bs 4 --checkpointing true --set train.offload_activations=true
run bs1-auto19-off --bs 1 --checkpointing auto --max-memory 19.2 --set train.offload_activations=true
run bs4-auto32-off --bs 4 --checkpointing auto --max-memory 32.6 --set train.offload_activations=true
for bs in 1 4; do
  ENGINE_PROFILE_OPS=host run bs$bs-host --bs $bs --checkpointing true --set train.offload_activations=true
  grep -A14 "host phase profile" /tmp/eb_bs$bs-host/engine_run.log | cut -c1-200
done
