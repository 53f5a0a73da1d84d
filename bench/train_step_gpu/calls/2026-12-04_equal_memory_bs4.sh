#!/usr/bin/env bash
# Equal memory at micro-batch 4 (Unsloth's 17.28 GiB peak) with what landed since the every-block row of
# 2026-12-03 (0.97-0.98x Unsloth): "auto" under 17.28 GiB with offloaded checkpoint inputs, cheap recompute and
# 11 kept blocks offloaded (so that some blocks need no recompute), and every block checkpointed with
# train.keep_attention; next to Unsloth and the step floor in the same call.
#   here:   ENGINE_PACK_TESTS="cuda_nf4_test cuda_train_step_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-04_equal_memory_bs4.sh   (carry .device, .peers)
set -uo pipefail
S=train.offload_activations=true
BS=4 STEPS=6 PEERS=unsloth EXACT=0 ENGINE_S=120 MAX_MEMORY=17.28 \
  ENGINE_SETTINGS="auto:ckpt-auto-17.28-kept11:$S,train.recompute_cheap_ops=true,train.offload_kept_blocks=11 true:ckpt-all-keepattn:$S,train.keep_attention=true" \
  OUT=$OUT/bs4 bash bench/train_step_gpu/compare.sh 2>&1 | grep -vE "^\s*$|^step " | tail -14
grep -h "checkpointing auto" /tmp/engine_bench_ckpt-auto*/engine_run.log 2>/dev/null | cut -c1-200
echo "=== done $(date +%T)"
