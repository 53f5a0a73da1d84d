#!/usr/bin/env bash
# The swiglu backward in place (the gradients over the saved gate and up when the node solely holds them):
# its kernel test, then micro-batch BS (default 1) with every block checkpointed and offloaded, deterministic
# (the default) and with train.deterministic = false (cuDNN's attention backward with a workspace linear in
# the tokens, as Unsloth's flash attention has), next to Unsloth in the same call (compare.sh).
#   here:   ENGINE_PACK_TESTS="cuda_activation_test" scripts/device/pack.sh; mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: BS=1 scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-02_swiglu_in_place.sh   (carry .device, .peers)
set -uo pipefail
[[ ${SKIP_KERNEL_TEST:-0} == 1 ]] || build/bin/cuda_activation_test 2>&1 | tail -3
BS=${BS:-1} STEPS=${STEPS:-8} PEERS=unsloth EXACT=0 ENGINE_S=240 \
  ENGINE_SETTINGS="true:ckpt-all-offload:train.offload_activations=true true:ckpt-all-offload-nondet:train.offload_activations=true,train.deterministic=false" \
  OUT=$OUT/bs${BS:-1} bash bench/train_step_gpu/compare.sh
