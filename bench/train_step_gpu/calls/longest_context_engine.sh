#!/usr/bin/env bash
# The engine's QLoRA at 491,520 tokens (480k), one step, no warm-up: the other half of longest_context_unsloth.sh.
# From 128k (35.45 GiB) and 256k (62.91) its peak grows 0.21 GiB per 1,000 tokens: about 111 GiB here. Offload pins
# the 28 blocks' inputs, 28 x 491,520 x 3,584 x 2 bytes = 98.6 GB of the machine's 125 GiB of host memory, so
# train.keep_attention (which would pin as much again) stays off. Estimated step: ~500 s (139.6 s at 256k, growing
# with the square: the attention's tokens-squared work is nearly all of it at this length).
#   here:   ENGINE_PACK_TESTS="cuda_nf4_test" scripts/device/pack.sh   (or the pack of longest_context_unsloth.sh)
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/longest_context_engine.sh   (carry .device)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
free -g | head -2
seq=${SEQ:-491520}
echo "=== engine qlora $seq $(date +%T)"
nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader,nounits -lms 500 > "$OUT/engine_${seq}_mem.csv" &
smi=$!
timeout 585 python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --recipe recipes/qwen7b_qlora.toml \
  --set optimizer.plugin=adamw --bs 1 --seq $seq --steps 1 --warmup 0 --checkpointing true \
  --set train.offload_activations=true --set train.deterministic=false --label qlora-$seq \
  --timeout 550 --out "$OUT/results.jsonl" --work /tmp/eb_$seq > "$OUT/engine_$seq.out" 2>&1
echo "rc=$? $(date +%T)"
kill $smi 2>/dev/null
grep -E "RESULT|bench:" "$OUT/engine_$seq.out" | sed -E 's/"losses".*//' | cut -c1-500
grep -iE "out of memory|cannot pin|error" /tmp/eb_$seq/engine_run.log | head -3 | cut -c1-300
cp /tmp/eb_$seq/engine_run.log "$OUT/engine_${seq}_run.log" 2>/dev/null
awk -F', ' '{if ($1+0 > m) m = $1+0; t = $2} END {printf "device memory used at most: %d MiB of %d (%.2f GiB)\n", m, t, m/1024}' \
  "$OUT/engine_${seq}_mem.csv"
echo "=== done $(date +%T)"
