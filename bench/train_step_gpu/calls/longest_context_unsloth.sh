#!/usr/bin/env bash
# The longest context Unsloth QLoRA trains on one H200 (issue 14: "a longer maximum trainable context than
# Unsloth's, measure both"). Its peak grew 0.28 GiB per 1,000 tokens from 128k (45.16 GiB) to 256k (80.99) in the
# calls of 2026-12-03/04, which puts 491,520 tokens (480k) at about 145 GiB, over the 139.8 GiB the card offers.
# One step, no warm-up: either RESULT (it trained) or its out-of-memory error. A full step at this length would
# take about 650 s (202 s at 256k, growing with the square), longer than one device call, so a run that neither
# trains nor fails within the limit reports the device memory it had reached (nvidia-smi, every 0.5 s).
# The engine's side is longest_context_engine.sh (the same length). Before it, the labelled cuda kernel tests.
#   here:   ENGINE_PACK_TESTS="<the cuda tests, about a dozen: the carry limit>" scripts/device/pack.sh; TESTS_RE names them
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/longest_context_unsloth.sh   (carry .device, .peers)
set -uo pipefail
start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [[ ${SKIP_TESTS:-0} != 1 ]]; then
  echo "=== ctest cuda_* $(date +%T)"
  timeout 200 ctest --test-dir build -R "${TESTS_RE:-^cuda_}" --output-on-failure --timeout 150 -j2 2>&1 | grep -vE "^\[ *(RUN|OK) " |
    tee "$OUT/ctest_cuda.log" | grep -E "tests passed|FAILED|Failure|Expected|Which is|rror|Not Run|Timeout" | head -40
fi
tar -C /tmp -xzf .peers/peer-packages.tgz
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 QWEN_TOKENIZER_DIR=$PWD/shared/fixtures/qwen-tokenizer
seq=${SEQ:-491520}
left=$((575 - (SECONDS - start)))
echo "=== unsloth_qlora $seq $(date +%T) (limit ${left}s)"
nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader,nounits -lms 500 > "$OUT/unsloth_${seq}_mem.csv" &
smi=$!
timeout $left python3 .peers/peer_lora.py unsloth_qlora --bs 1 --seq $seq --steps 1 --warmup 0 --out $OUT/peers.jsonl \
  > "$OUT/unsloth_$seq.log" 2>&1
echo "rc=$? $(date +%T)"
kill $smi 2>/dev/null
grep -E "RESULT|OutOfMemory|out of memory|Error" "$OUT/unsloth_$seq.log" | sed -E 's/"losses".*//' | cut -c1-600 | tail -4
awk -F', ' '{if ($1+0 > m) m = $1+0; t = $2} END {printf "device memory used at most: %d MiB of %d (%.2f GiB)\n", m, t, m/1024}' \
  "$OUT/unsloth_${seq}_mem.csv"
echo "=== done $(date +%T)"
