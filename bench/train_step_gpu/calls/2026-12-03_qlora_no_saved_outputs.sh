#!/usr/bin/env bash
# QLoRA at 32k and 64k tokens next to Unsloth QLoRA in the same call, after nf4.dequant_matmul stopped keeping
# its input and output for backward (ENG_CUSTOM_OP_BACKWARD_NO_INPUTS | _NO_OUTPUTS). A CPU trace of the peak
# (2026-12-03 12:50) put it inside nf4.dequant_matmul's backward during a checkpointed block's replay, with the
# base outputs of the block's seven projections held by their custom-op nodes. First the cuda tests that run nf4
# and the training step.
#   here:   ENGINE_PACK_TESTS="cuda_nf4_test cuda_train_step_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_qlora_no_saved_outputs.sh
#           (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
(cd build && timeout 150 ctest -R "cuda_nf4|cuda_train_step" --output-on-failure 2>&1 | tail -6)
tar -C /tmp -xzf .peers/peer-packages.tgz
B="python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml --set optimizer.plugin=adamw --out $OUT/results.jsonl"
run() { label=$1; shift; echo "=== $label $(date +%T)"; ENGINE_PROFILE_MEMORY=1 timeout 200 $B --label "$label" --work /tmp/eb_$label "$@" 2>&1 | grep -E "RESULT|bench:|Error|error" | sed -E 's/"losses".*//' | cut -c1-700; grep -A4 "memory profile over" /tmp/eb_$label/engine_run.log | cut -c1-160; grep -E "warn|error" /tmp/eb_$label/engine_run.log | head -3 | cut -c1-300; }
run qlora32k-nosave --bs 1 --seq 32768 --steps 2 --warmup 1 --checkpointing true --set train.offload_activations=true --set train.deterministic=false
run qlora64k-nosave --bs 1 --seq 65536 --steps 2 --warmup 1 --checkpointing true --set train.offload_activations=true --set train.deterministic=false
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 QWEN_TOKENIZER_DIR=$PWD/shared/fixtures/qwen-tokenizer
for seq in 32768 65536; do
  echo "=== unsloth_qlora $seq $(date +%T)"
  timeout 200 python3 .peers/peer_lora.py unsloth_qlora --bs 1 --seq $seq --steps 2 --warmup 1 --out $OUT/peers.jsonl 2>&1 |
    grep -E "RESULT|Error|error" | sed -E 's/"losses".*//' | cut -c1-600
done
echo "=== done $(date +%T)"
