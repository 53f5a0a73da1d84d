// The devices a layer placement (parallel.plugin = "layers", eng_parallel_vtable.place_layers) spreads one
// process's run over; device 0 is always the run's own.
//
// On the CPU the others are simulated devices: each has its own caching allocator and memory counter (so the
// per-device memory of a placement is measured as it would be on GPUs) and runs the CPU's kernels on the CPU's
// thread pool; a tensor of one of them used with one of another is refused by the ops like on real devices.
// They let the placement, the moves between devices and the losses be tested without GPUs. Several CUDA
// devices in one process are refused with what to use instead (the CUDA ops run on one device's streams).
#pragma once

#include <vector>

#include "engine/runtime/device.hpp"

namespace engine::rt {

// How many devices a placement may use with `run` as device 0: 0 on the CPU (simulated: any number), the
// visible CUDA devices on CUDA.
int layer_devices_available(Device& run);

// `n` devices, the first `run`; throws engine::Error when they cannot be driven (n < 1; more than one CUDA
// device). Simulated CPU devices are created once per index and live until the process exits.
std::vector<Device*> layer_devices(Device& run, int n);

}  // namespace engine::rt
