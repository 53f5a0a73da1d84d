#!/usr/bin/env bash
# QLoRA at 32k tokens after the decoder's locals let go of q/k/v/a/gate/up right after their last use (the 32k
# memory profile put the peak in the checkpointed forward, above the replay's): engine alone, with the profile.
#   here:   ENGINE_PACK_TESTS="cuda_train_step_test" scripts/device/pack.sh
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_qlora_32k_after_locals.sh   (carry .device)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ENGINE_PROFILE_MEMORY=1 timeout 200 python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml \
  --set optimizer.plugin=adamw --bs 1 --seq 32768 --steps 2 --warmup 1 --checkpointing true \
  --set train.offload_activations=true --set train.deterministic=false --label qlora32k-locals --out "$OUT/results.jsonl" \
  --work /tmp/eb_l32k > /tmp/eb_l32k.out 2>&1
grep -E "RESULT" /tmp/eb_l32k.out | sed -E 's/"losses".*//' | cut -c1-400
grep -A14 "memory profile over" /tmp/eb_l32k/engine_run.log | cut -c1-200 || tail -8 /tmp/eb_l32k/engine_run.log
