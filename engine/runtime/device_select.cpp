#include "engine/runtime/device_select.hpp"

#include <cstdlib>

#include "engine/core/error.hpp"

#if ENGINE_HAVE_CUDA
#include "engine/runtime/devices/cuda/cuda_device.hpp"
#endif

namespace engine::rt {

namespace {

constexpr const char* kChoices =
    "use \"cpu\", \"cuda\" (the first GPU), \"cuda:N\" (GPU N, from 0) or \"auto\"";

[[maybe_unused]] std::string visible_devices_env() {
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  return v ? fmt::format("CUDA_VISIBLE_DEVICES=\"{}\"", v) : std::string("CUDA_VISIBLE_DEVICES is not set");
}

// The index in "cuda:N"; engine::Error for anything but decimal digits.
int parse_index(const std::string& spec) {
  const std::string digits = spec.substr(5);
  if (digits.empty() || digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos)
    fail(
        "device \"{}\": \"{}\" is not a device index; write cuda:N with N a GPU number from 0 (e.g. "
        "\"cuda:0\"), or {}",
        spec, digits, kChoices);
  return std::stoi(digits);
}

Device& cuda_from_spec(const std::string& spec, int index) {
#if ENGINE_HAVE_CUDA
  std::string why;
  const int count = usable_cuda_devices(&why);
  if (count == 0)
    fail(
        "device \"{}\": no CUDA device is visible ({}; {}). Check that the NVIDIA driver works (nvidia-smi) "
        "and that CUDA_VISIBLE_DEVICES names a GPU, or set train.device = \"cpu\"",
        spec, why, visible_devices_env());
  if (index >= count)
    fail(
        "device \"{}\": only {} CUDA device{} visible (cuda:0..cuda:{}; {}); pick one of those, or set "
        "train.device = \"cpu\"",
        spec, count, count == 1 ? " is" : "s are", count - 1, visible_devices_env());
  return cuda_device(index);
#else
  (void)index;
  fail(
      "device \"{}\": this engine was built without the CUDA backend (nvcc was not found when it was "
      "configured, or ENGINE_CUDA=OFF); set train.device = \"cpu\", or rebuild with the CUDA toolkit on PATH "
      "(cmake -DENGINE_CUDA=ON)",
      spec);
#endif
}

}  // namespace

bool cuda_backend_built() {
#if ENGINE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

int usable_cuda_devices(std::string* why) {
#if ENGINE_HAVE_CUDA
  return cuda_device_count(why);
#else
  if (why) *why = "this engine was built without the CUDA backend";
  return 0;
#endif
}

Device& device_from_spec(const std::string& spec) {
  if (spec == "cpu") return cpu_device();
  if (spec == "auto" || spec.empty())
    return usable_cuda_devices() > 0 ? cuda_from_spec("auto", 0) : cpu_device();
  if (spec == "cuda") return cuda_from_spec(spec, 0);
  if (spec.rfind("cuda:", 0) == 0) return cuda_from_spec(spec, parse_index(spec));
  fail("device \"{}\" is not a device name; {}", spec, kChoices);
}

}  // namespace engine::rt
