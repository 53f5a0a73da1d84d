#!/usr/bin/env bash
# 1. pp and layers on CUDA tensors at world 1 (issue 17: each plugin's world-1 path on the GPU; the new
#    pp_cuda_test and layers_cuda_test, with zero3/fsdp/tp's for comparison).
# 2. QLoRA at 32k and 64k tokens next to Unsloth QLoRA in the same call, again after the replay and gradient-sum
#    fixes (2026-12-02 19:37-20:00) that lowered the short-context peaks: the long-context rows were measured
#    before them (19.22 / 32.66 GiB against Unsloth's 15.55 / 25.42).
#   here:   ENGINE_PACK_TESTS="pp_cuda_test layers_cuda_test tp_cuda_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_layers_cuda_and_qlora_long_context.sh
#           (carry .device, .peers)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== cuda tests $(date +%T)"
ctest --test-dir build -R "^(pp|layers|tp)_cuda_test$" --output-on-failure 2>&1 |
  grep -E "Failure|Expected|Which|actual|FAILED|Passed|Skipped|worst|tests passed|error" | head -40
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
