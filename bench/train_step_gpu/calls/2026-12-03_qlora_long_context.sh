#!/usr/bin/env bash
# QLoRA at 32k and 64k tokens next to Unsloth QLoRA in the same call, again after the replay and gradient-sum
# fixes (2026-12-02 19:37-20:00) that lowered the short-context peaks: the long-context rows were measured before
# them (19.22 / 32.66 GiB against Unsloth's 15.55 / 25.42).
#   here:   scripts/device/pack.sh (or the pack of 2026-12-03_cheap_recompute_bs4.sh)
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_qlora_long_context.sh
#           (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
tar -C /tmp -xzf .peers/peer-packages.tgz
B="python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml --set optimizer.plugin=adamw --out $OUT/results.jsonl"
run() { label=$1; shift; echo "=== $label $(date +%T)"; timeout 200 $B --label "$label" --work /tmp/eb_$label "$@" 2>&1 | grep -E "RESULT|bench:|Error|error" | sed -E 's/"losses".*//' | cut -c1-700; grep -E "warn|error" /tmp/eb_$label/engine_run.log | head -3 | cut -c1-300; }
run qlora32k-nondet --bs 1 --seq 32768 --steps 2 --warmup 1 --checkpointing true --set train.offload_activations=true --set train.deterministic=false
run qlora64k-nondet --bs 1 --seq 65536 --steps 2 --warmup 1 --checkpointing true --set train.offload_activations=true --set train.deterministic=false
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 QWEN_TOKENIZER_DIR=$PWD/shared/fixtures/qwen-tokenizer
for seq in 32768 65536; do
  echo "=== unsloth_qlora $seq $(date +%T)"
  timeout 240 python3 .peers/peer_lora.py unsloth_qlora --bs 1 --seq $seq --steps 2 --warmup 1 --out $OUT/peers.jsonl 2>&1 |
    grep -E "RESULT|Error|error" | sed -E 's/"losses".*//' | cut -c1-600
done
echo "=== done $(date +%T)"
