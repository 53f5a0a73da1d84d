#!/usr/bin/env bash
# 1. The whole cuda-labelled suite at 284514a (last run in full before the layers, cheap-recompute and decoder-locals
#    commits), then compute-sanitizer's memcheck over cuda_train_step_test.
# 2. QLoRA at 32k tokens after the decoder's locals let go of q/k/v/a/gate/up right after their last use (commit
#    9e21921; the previous profile put the peak in the checkpointed forward), with the memory profile.
# 3. The op profile (synchronized per op) of micro-batch 4 under 32.6 GiB with offload and cheap recompute: where
#    the 598 ms step goes now.
#   here:   ENGINE_PACK_TESTS="$(cd build && ctest -N -L cuda | awk '/Test +#/{print $3}')" scripts/device/pack.sh
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_suite_32k_profile.sh   (carry .device)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== cuda suite $(date +%T)"
timeout 220 ctest --test-dir build -L cuda --output-on-failure 2>&1 |
  grep -E "Failure|Expected|Which|actual|FAILED|Passed|Skipped|SKIP|tests passed|Total Test|error" | head -60
echo "=== qlora 32k after locals $(date +%T)"
ENGINE_PROFILE_MEMORY=1 timeout 170 python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml \
  --set optimizer.plugin=adamw --bs 1 --seq 32768 --steps 2 --warmup 1 --checkpointing true \
  --set train.offload_activations=true --set train.deterministic=false --label qlora32k-locals --out "$OUT/results.jsonl" \
  --work /tmp/eb_l32k > /tmp/eb_l32k.out 2>&1
grep -E "RESULT|bench:" /tmp/eb_l32k.out | sed -E 's/"losses".*//' | cut -c1-500
grep -A12 "memory profile over" /tmp/eb_l32k/engine_run.log | cut -c1-200 || tail -8 /tmp/eb_l32k/engine_run.log
echo "=== bs4 op profile $(date +%T)"
ENGINE_PROFILE_OPS=1 timeout 110 python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --bs 4 --steps 2 --warmup 1 \
  --checkpointing auto --max-memory 32.6 --set train.offload_activations=true --set train.recompute_cheap_ops=true \
  --label bs4-profile --out "$OUT/results.jsonl" --work /tmp/eb_prof > /tmp/eb_prof.out 2>&1
grep -E "RESULT|bench:" /tmp/eb_prof.out | sed -E 's/"losses".*//' | cut -c1-400
grep -A45 "op profile over" /tmp/eb_prof/engine_run.log | cut -c1-220 || tail -8 /tmp/eb_prof/engine_run.log
echo "=== compute-sanitizer $(date +%T)"
timeout 75 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 3 build/bin/cuda_train_step_test \
  --gtest_filter='*LoraFp32MatchesCpu:*CheapRecompute*' 2>&1 | grep -vE "^\[ *(RUN|OK) " | tail -15; echo "sanitizer rc=${PIPESTATUS[0]}"
echo "=== done $(date +%T)"
