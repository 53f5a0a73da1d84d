#!/usr/bin/env bash
# Where a step reaches its allocator peak (ENGINE_PROFILE_MEMORY=1: each op notes how far it raised the peak,
# nothing synchronized): Qwen2.5-7B-shaped LoRA, every block checkpointed and offloaded, micro-batch 1 and 4.
#   here:   ENGINE_PACK_TESTS="cuda_activation_test" scripts/device/pack.sh; mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-02_memory_profile.sh   (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
tar -C /tmp -xzf .peers/peer-packages.tgz
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export QWEN_TOKENIZER_DIR=$PWD/shared/fixtures/qwen-tokenizer
model=/tmp/qwen7b_peer_random
timeout 150 python3 .peers/peer_lora.py save --bs 1 --seq 2048 --steps 1 --model-dir "$model" --out /tmp/save.jsonl 2>&1 | grep RESULT
[[ -f $model/tokenizer.json ]] || cp "$QWEN_TOKENIZER_DIR"/* "$model"/
for bs in ${BATCHES:-1 4}; do
  echo "=== micro-batch $bs ($(date +%T))"
  ENGINE_PROFILE_MEMORY=1 timeout 240 python3 bench/train_step_gpu/bench.py --engine build/bin/engine --model-dir "$model" \
    --bs "$bs" --seq 2048 --steps 5 --warmup 2 --checkpointing true --label mem-bs$bs --set train.offload_activations=true \
    --out "$OUT/results.jsonl" --work /tmp/eb_mem$bs > /tmp/eb_mem$bs.out 2>&1
  grep -E "RESULT" /tmp/eb_mem$bs.out | sed -E 's/"losses".*//' | cut -c1-400
  grep -A26 "memory profile over" /tmp/eb_mem$bs/engine_run.log | cut -c1-200 ||
    { tail -5 /tmp/eb_mem$bs.out; tail -8 /tmp/eb_mem$bs/engine_run.log; } | cut -c1-300
done
