#!/usr/bin/env bash
# 1. The whole cuda-labelled suite (with CudaTrainStep.KeptBlockOffloadGivesTheSameBitsInBf16, new).
# 2. The host link: torch's pinned copies of 1 GiB each way (what kept-block offload can move per second).
# 3. Micro-batch 4 under 32.6 GiB with train.offload_kept_blocks (new): blocks that keep their activations hold
#    them in pinned host memory between forward and backward, so "auto" recomputes fewer blocks. Engine alone,
#    MFU against its own cuBLASLt ceiling; the first row repeats the best setting so far.
#   here:   ENGINE_PACK_TESTS="$(cd build && ctest -N -L cuda | awk '/Test +#/{print $3}')" scripts/device/pack.sh
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-03_kept_offload_sweep.sh   (carry .device)
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== cuda suite $(date +%T)"
timeout 240 ctest --test-dir build -L cuda --output-on-failure 2>&1 |
  grep -E "Failure|Expected|Which|actual|FAILED|Passed|Skipped|SKIP|tests passed|Total Test|rror" | head -60
echo "=== host link $(date +%T)"
timeout 60 python3 - <<'PY'
import torch, time
n = 1 << 30
d = torch.empty(n, dtype=torch.uint8, device="cuda"); h = torch.empty(n, dtype=torch.uint8, pin_memory=True)
for name, dst, src in (("D2H", h, d), ("H2D", d, h)):
    dst.copy_(src, non_blocking=True); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(5): dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize(); print(f"{name} pinned: {5 * n / (time.perf_counter() - t) / 1e9:.1f} GB/s")
PY
B="python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --bs 4 --steps 5 --warmup 2 --checkpointing auto --max-memory 32.6 --set train.offload_activations=true --set train.recompute_cheap_ops=true --out $OUT/results.jsonl"
run() { label=$1; shift; echo "=== $label $(date +%T)"; timeout 150 $B --label "$label" --work /tmp/eb_$label "$@" 2>&1 | grep -E "RESULT|bench:|rror" | sed -E 's/"losses".*//' | cut -c1-600;
  grep -hE "checkpointing auto|offload_kept|peak|warn|rror" /tmp/eb_$label/engine_run.log | head -6 | cut -c1-300; }
run auto-32.6-offload-cheap
run auto-32.6-kept11 --set train.offload_kept_blocks=11
run auto-32.6-kept14 --set train.offload_kept_blocks=14
run auto-32.6-kept8 --set train.offload_kept_blocks=8
echo "=== done $(date +%T)"
