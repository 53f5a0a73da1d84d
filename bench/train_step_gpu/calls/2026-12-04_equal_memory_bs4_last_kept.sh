#!/usr/bin/env bash
# Equal memory at micro-batch 4, the last blocks kept: with every block checkpointed the step's highest point is
# one replayed block's height at backward's start, which the last block holds anyway when it keeps its
# activations instead of recomputing them, so checkpointing 27 of 28 blocks should cost no memory (26 with cheap
# recompute: two kept blocks, the second a third smaller). With train.keep_attention and offloaded inputs, next
# to Unsloth and the floor in the same call (after 2026-12-04_equal_memory_bs4.sh: "auto" under 17.28 GiB kept
# all 28 blocks checkpointed).
#   here:   ENGINE_PACK_TESTS="cuda_nf4_test cuda_train_step_test" scripts/device/pack.sh
#           mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-04_equal_memory_bs4_last_kept.sh   (carry .device, .peers)
set -uo pipefail
S=train.offload_activations=true,train.keep_attention=true
BS=4 STEPS=6 PEERS=unsloth EXACT=0 ENGINE_S=120 \
  ENGINE_SETTINGS="27:ckpt-27-keepattn:$S 26:ckpt-26-keepattn-cheap:$S,train.recompute_cheap_ops=true" \
  OUT=$OUT/bs4 bash bench/train_step_gpu/compare.sh 2>&1 | grep -vE "^\s*$|^step " | tail -8
echo "=== done $(date +%T)"
