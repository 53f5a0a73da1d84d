#!/usr/bin/env bash
# After the replay drops values at their last use and intermediate gradients sum in place: the CUDA training
# step tests (checkpointing and offload bit for bit against the plain step), then micro-batch 4 and 1 next to
# Unsloth in the same call (compare.sh through 2026-12-02_swiglu_in_place.sh).
#   here:   ENGINE_PACK_TESTS="cuda_activation_test cuda_train_step_test" scripts/device/pack.sh; mkdir -p .peers && cp ../shared/peers/* .peers/
#   device: scripts/device/run.sh bash bench/train_step_gpu/calls/2026-12-02_replay_and_grad_sums.sh   (carry .device, .peers)
set -uo pipefail
timeout 200 build/bin/cuda_train_step_test 2>&1 | grep -E "^\[ +(FAILED|PASSED) |tests ran" | head
for bs in 4 1; do
  BS=$bs STEPS=6 SKIP_KERNEL_TEST=1 bash bench/train_step_gpu/calls/2026-12-02_swiglu_in_place.sh 2>&1 | grep -E "^\||floor"
done
