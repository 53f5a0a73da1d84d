#!/usr/bin/env bash
# One device call: the engine's training-step benchmark (bench.py) next to the peers (../shared/peers:
# transformers+PEFT, Unsloth) and the step floor, on the same GPU, the same random Qwen2.5-7B-shaped weights
# (peer_lora.py save writes them; both engines train that folder), then one table with the ratios
# (table.py -> $OUT/compare.json and $OUT/compare.md).
#   here:  scripts/device/pack.sh; mkdir -p .peers && cp ../shared/peers/* .peers/
#   device (carry [".device", ".peers"]):
#     scripts/device/run.sh bench/train_step_gpu/compare.sh          # micro-batch 1
#     BS=4 ENGINE_SETTINGS="false:ckpt-none 14:ckpt-14" scripts/device/run.sh bench/train_step_gpu/compare.sh
# ENGINE_SETTINGS: space-separated train.activation_checkpointing values, each value[:label[:key=v,key=v]]
#   (the third part: extra --set pairs, e.g. true:ckpt-all-offload:train.offload_activations=true)
# RECIPE: the engine's recipe (default recipes/qwen7b_lora.toml; recipes/qwen7b_qlora.toml with
# PEERS="hf_qlora unsloth_qlora" EXACT=0 for QLoRA). PEERS: which peer_lora.py variants (default "hf unsloth"). EXACT=1 (default) also trains two steps on the
# peers' own fixed batch (same weights, same ids), whose first loss table.py sets next to theirs.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-$PWD/gpu_out}
mkdir -p "$out"
bs=${BS:-1}
seq=${SEQ:-2048}
steps=${STEPS:-10}
res=$out/results.jsonl
model=/tmp/qwen7b_peer_random
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
tar -C /tmp -xzf .peers/peer-packages.tgz
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export QWEN_TOKENIZER_DIR=$PWD/shared/fixtures/qwen-tokenizer
peer() { timeout "${PEER_S:-150}" python3 .peers/peer_lora.py "$@" --bs "$bs" --seq "$seq" --steps "$steps" \
  --model-dir "$model" --out "$res" 2>&1 | grep -E "^RESULT|Error|error" | tail -3; }
echo "=== gemm ceiling, saving the random model ($(date +%T))"
peer gemm
peer save
for s in ${ENGINE_SETTINGS:-true:ckpt-all}; do
  value=${s%%:*}; label=${s#*:}; extra=()
  if [[ $label == *:* ]]; then
    IFS=, read -ra pairs <<< "${label#*:}"; label=${label%%:*}
    for kv in "${pairs[@]}"; do extra+=(--set "$kv"); done
  fi
  echo "=== engine $label ($(date +%T))"
  timeout "${ENGINE_S:-200}" python3 bench/train_step_gpu/bench.py --engine build/bin/engine --model-dir "$model" \
    --bs "$bs" --seq "$seq" --steps "$steps" --checkpointing "$value" --label "$label" "${extra[@]}" \
    --max-memory "${MAX_MEMORY:-0}" --recipe "${RECIPE:-recipes/qwen7b_lora.toml}" --out "$res" \
    --work /tmp/engine_bench_$label 2>&1 | tail -3 | cut -c1-600
  tail -5 /tmp/engine_bench_$label/engine_run.log 2>/dev/null | cut -c1-300
done
if [[ ${EXACT:-1} == 1 ]]; then
  # Step 1 on the peers' own batch (peer_lora.py: torch.randint on a CUDA generator seeded 0, labels = ids)
  # and the same weights: with LoRA's B = 0 both losses are the base model's, to bf16 rounding.
  echo "=== engine on the peers' batch ($(date +%T))"
  python3 -c "
import json, torch
g = torch.Generator(device='cuda').manual_seed(0)
ids = torch.randint(0, 152064, ($bs, $seq), device='cuda', generator=g)
json.dump(ids.tolist(), open('/tmp/peer_ids.json', 'w'))"
  timeout "${ENGINE_S:-200}" python3 bench/train_step_gpu/bench.py --engine build/bin/engine --model-dir "$model" \
    --bs "$bs" --seq "$seq" --steps 2 --warmup 0 --checkpointing true --label exact-peer-batch \
    --ids /tmp/peer_ids.json --out "$res" --work /tmp/engine_bench_exact 2>&1 | tail -2 | cut -c1-400
fi
for v in ${PEERS:-hf unsloth}; do
  echo "=== peer $v ($(date +%T))"
  peer "$v"
done
echo "=== step floor ($(date +%T))"
timeout 120 python3 .peers/step_floor.py --bs "$bs" --seq "$seq" 2>&1 | grep '^RESULT' | sed 's/^RESULT //' >> "$res"
python3 bench/train_step_gpu/table.py "$res" --json "$out/compare.json" | tee "$out/compare.md"
