// device_from_spec: the rt::Device a recipe's train.device names.
//
//   "cpu"     the process-wide CPU device (cpu_device())
//   "cuda"    CUDA device 0; "cuda:N" CUDA device N (N a decimal index among the visible devices)
//   "auto"    CUDA device 0 when this build has the CUDA backend and a GPU is visible, else the CPU; ""
//             means "auto" (a recipe that does not set train.device)
//
// CUDA devices are created on first use, once per index, and live until the process exits. Anything else,
// and "cuda*" where no GPU can be used, throws engine::Error saying why (built without the CUDA backend; no
// device visible, with the CUDA runtime's reason and CUDA_VISIBLE_DEVICES; an index out of range; a
// malformed spec) and what to write instead.
#pragma once

#include <string>

#include "engine/runtime/device.hpp"

namespace engine::rt {

Device& device_from_spec(const std::string& spec);

// Whether this build has the CUDA backend (ENGINE_HAVE_CUDA), and how many CUDA devices it can use now (0
// in a CPU-only build or without a GPU; *why then says why).
bool cuda_backend_built();
int usable_cuda_devices(std::string* why = nullptr);

}  // namespace engine::rt
