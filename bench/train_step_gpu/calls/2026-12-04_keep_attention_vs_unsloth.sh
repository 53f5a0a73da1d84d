#!/usr/bin/env bash
# train.keep_attention at 32k and 64k tokens next to Unsloth QLoRA in the same call: checkpointed blocks keep
# their attention's output and statistics (offloaded to pinned host memory with the blocks' inputs), so the
# replay skips the attention forward, a tokens-squared cost that was the largest part of the replay at long
# context. First the cuda tests that run nf4 and the training step (KeptAttentionGivesTheSameBitsInBf16 among
# them). Part of the 2026-12-04 runs; 2026-12-04_keep_attention_128k.sh is the next call.
#   here:   ENGINE_PACK_TESTS="cuda_nf4_test cuda_train_step_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-04_keep_attention_vs_unsloth.sh
#           (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
free -g | head -2
(cd build && timeout 150 ctest -R "cuda_nf4|cuda_train_step" --output-on-failure 2>&1 | tail -6)
tar -C /tmp -xzf .peers/peer-packages.tgz
B="python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml --set optimizer.plugin=adamw --out $OUT/results.jsonl"
run() { label=$1; shift; echo "=== $label $(date +%T)"; timeout 200 $B --label "$label" --work /tmp/eb_$label "$@" 2>&1 | grep -E "RESULT|bench:|Error|error" | sed -E 's/"losses".*//' | cut -c1-700; grep -E "warn|error" /tmp/eb_$label/engine_run.log | head -3 | cut -c1-300; }
LONG="--bs 1 --steps 2 --warmup 1 --checkpointing true --set train.offload_activations=true --set train.deterministic=false"
run qlora32k-keepattn --seq 32768 $LONG --set train.keep_attention=true
run qlora64k-keepattn --seq 65536 $LONG --set train.keep_attention=true
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 QWEN_TOKENIZER_DIR=$PWD/shared/fixtures/qwen-tokenizer
for seq in 32768 65536; do
  echo "=== unsloth_qlora $seq $(date +%T)"
  timeout 200 python3 .peers/peer_lora.py unsloth_qlora --bs 1 --seq $seq --steps 2 --warmup 1 --out $OUT/peers.jsonl 2>&1 |
    grep -E "RESULT|Error|error" | sed -E 's/"losses".*//' | cut -c1-600
done
run qlora32k-nokeep --seq 32768 $LONG
echo "=== done $(date +%T)"
