#!/usr/bin/env bash
# train.deterministic = false (cuDNN's non-deterministic attention backward) against the default, in one call:
# the cuDNN attention tests (incl. the non-deterministic backward against the CPU), then Qwen2.5-7B-shaped LoRA
# steps at micro-batch 4 x 2,048 and at 32k and 64k tokens, each setting with and without the key.
# Packed with: ENGINE_PACK_TESTS="cuda_attention_test" scripts/device/pack.sh
# Run with:    scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-02_nondeterministic_attention.sh
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ctest --test-dir build -R "cuda_attention_test" --output-on-failure 2>&1 | grep -vE "^\[ *(RUN|OK) " | tail -8
build/bin/cuda_attention_test --gtest_filter='*NonDeterministic*' 2>&1 | grep -E "workspace|OK|FAILED" | head -4
B="python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --out $OUT/results.jsonl"
run() { label=$1; shift; echo "=== $label $(date +%T)"; timeout 200 $B --label "$label" --work /tmp/eb_$label "$@" 2>&1 | grep -E "RESULT|bench:|Error|error" | sed -E 's/"losses".*//' | cut -c1-700; grep -E "warn|error" /tmp/eb_$label/engine_run.log | head -3 | cut -c1-300; }
run bs4-det --bs 4 --steps 4 --warmup 1 --checkpointing true --set train.offload_activations=true
run bs4-nondet --bs 4 --steps 4 --warmup 1 --checkpointing true --set train.offload_activations=true --set train.deterministic=false
run ctx32k-det --bs 1 --seq 32768 --steps 2 --warmup 1 --checkpointing true --set train.offload_activations=true
run ctx32k-nondet --bs 1 --seq 32768 --steps 2 --warmup 1 --checkpointing true --set train.offload_activations=true --set train.deterministic=false
run ctx64k-nondet --bs 1 --seq 65536 --steps 2 --warmup 1 --checkpointing true --set train.offload_activations=true --set train.deterministic=false
echo "=== done $(date +%T)"
