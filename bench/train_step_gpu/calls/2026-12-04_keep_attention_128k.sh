#!/usr/bin/env bash
# QLoRA at 131,072 tokens with train.keep_attention next to Unsloth QLoRA in the same call (1 warm-up and 1
# timed step each; never measured side by side before). Host memory: the 28 blocks' inputs and attention
# results, 2 x 28 x 0.94 GB pinned.
#   here:   ENGINE_PACK_TESTS="cuda_nf4_test cuda_train_step_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-04_keep_attention_128k.sh   (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
tar -C /tmp -xzf .peers/peer-packages.tgz
echo "=== engine qlora128k-keepattn $(date +%T)"
timeout 250 python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml \
  --set optimizer.plugin=adamw --bs 1 --seq 131072 --steps 1 --warmup 1 --checkpointing true \
  --set train.offload_activations=true --set train.deterministic=false --set train.keep_attention=true \
  --label qlora128k-keepattn --out "$OUT/results.jsonl" --work /tmp/eb_128k > /tmp/eb_128k.out 2>&1
grep -E "RESULT|bench:" /tmp/eb_128k.out | sed -E 's/"losses".*//' | cut -c1-500
grep -iE "out of memory|error" /tmp/eb_128k/engine_run.log | head -3 | cut -c1-300
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 QWEN_TOKENIZER_DIR=$PWD/shared/fixtures/qwen-tokenizer
echo "=== unsloth_qlora 131072 $(date +%T)"
timeout 250 python3 .peers/peer_lora.py unsloth_qlora --bs 1 --seq 131072 --steps 1 --warmup 1 --out $OUT/peers.jsonl 2>&1 |
  grep -E "RESULT|Error|error" | sed -E 's/"losses".*//' | cut -c1-600
echo "=== done $(date +%T)"
