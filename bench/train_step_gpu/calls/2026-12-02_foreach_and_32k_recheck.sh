#!/usr/bin/env bash
set -uo pipefail
ctest --test-dir build -R "cuda_foreach_test" --output-on-failure 2>&1 | grep -E "Failure|Expected|Which|actual|FAILED|Passed|error|rel|max" | head -30
ctest --test-dir build -R "cuda_train_step_test" --output-on-failure 2>&1 | grep -E "Failure|FAILED|Passed|tests passed" | head -10
B="python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --warmup 1 --out $OUT/results.jsonl"
run() { label=$1; shift; echo "=== $label $(date +%T)"; timeout 150 $B --label "$label" --work /tmp/eb_$label "$@" 2>&1 | grep -E "RESULT|bench:|Error|error" | sed -E 's/"losses".*//' | cut -c1-600; grep -E "attention (forward|backward)" /tmp/eb_$label/engine_run.log | cut -c1-300; tail -1 /tmp/eb_$label/engine_run.log | cut -c1-300; }
run ctx32k-off --bs 1 --seq 32768 --steps 2 --checkpointing true --set train.offload_activations=true
run ctx64k-off --bs 1 --seq 65536 --steps 1 --checkpointing true --set train.offload_activations=true
