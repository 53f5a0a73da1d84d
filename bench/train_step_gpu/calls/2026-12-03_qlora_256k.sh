#!/usr/bin/env bash
# QLoRA at 262,144 tokens (micro-batch 1), the engine and Unsloth QLoRA in the same call, one step each and no
# warm-up (a step takes over two minutes): does the engine train Unsloth's longest published context in no more
# memory, and at what rate? Run after 2026-12-03_qlora_no_saved_outputs.sh (the same pack).
#   here:   ENGINE_PACK_TESTS="cuda_nf4_test cuda_train_step_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_qlora_256k.sh   (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
tar -C /tmp -xzf .peers/peer-packages.tgz
echo "=== engine qlora256k $(date +%T)"
timeout 280 python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml \
  --set optimizer.plugin=adamw --bs 1 --seq 262144 --steps 1 --warmup 0 --checkpointing true \
  --set train.offload_activations=true --set train.deterministic=false --label qlora256k-nosave \
  --out "$OUT/results.jsonl" --work /tmp/eb_256k > /tmp/eb_256k.out 2>&1
grep -E "RESULT|bench:" /tmp/eb_256k.out | sed -E 's/"losses".*//' | cut -c1-500
grep -iE "out of memory|error" /tmp/eb_256k/engine_run.log | head -3 | cut -c1-300
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 QWEN_TOKENIZER_DIR=$PWD/shared/fixtures/qwen-tokenizer
echo "=== unsloth_qlora 262144 $(date +%T)"
timeout 280 python3 .peers/peer_lora.py unsloth_qlora --bs 1 --seq 262144 --steps 1 --warmup 0 --out $OUT/peers.jsonl 2>&1 |
  grep -E "RESULT|Error|error" | sed -E 's/"losses".*//' | cut -c1-600
echo "=== done $(date +%T)"
