#!/usr/bin/env bash
# The longest context Unsloth QLoRA trains on one H200 (issue 14: "a longer maximum trainable context than
# Unsloth's, measure both"). Its peak grew 0.28 GiB per 1,000 tokens from 128k (45.16 GiB) to 256k (80.99) in the
# calls of 2026-12-03/04, which puts 458,752 tokens at about 135 GiB (the edge of the 139 GiB the card offers) and
# 524,288 at about 153 (over). One step each, no warm-up: either RESULT (it trained) or its out-of-memory error.
# Prepared 2026-12-04 and not yet run (that session's device time was spent); the engine's side is
# longest_context_engine.sh.
#   here:   mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/longest_context_unsloth.sh   (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
tar -C /tmp -xzf .peers/peer-packages.tgz
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 QWEN_TOKENIZER_DIR=$PWD/shared/fixtures/qwen-tokenizer
for seq in 524288 458752; do
  echo "=== unsloth_qlora $seq $(date +%T)"
  timeout 270 python3 .peers/peer_lora.py unsloth_qlora --bs 1 --seq $seq --steps 1 --warmup 0 --out $OUT/peers.jsonl \
    > /tmp/u_$seq.log 2>&1
  echo "rc=$?"
  grep -E "RESULT|OutOfMemory|out of memory|Error" /tmp/u_$seq.log | sed -E 's/"losses".*//' | cut -c1-400 | tail -3
done
echo "=== done $(date +%T)"
