// device_from_spec (engine/runtime/device_select.cpp): "cpu", "auto" (and "") give the CPU device where no
// GPU can be used, "cuda"/"cuda:N" give CUDA devices where one can and otherwise an engine::Error that says
// why and what to write instead, and malformed specs are refused with the list of valid ones. On a GPU
// machine the CUDA cases run too (the same object per index, an index past the last GPU refused); the
// second ctest entry hides every GPU (CUDA_VISIBLE_DEVICES=-1) so the no-GPU messages are checked there as
// well.
#include "engine/runtime/device_select.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "engine/core/error.hpp"

namespace engine::rt {
namespace {

std::string error_of(const std::string& spec) {
  try {
    device_from_spec(spec);
  } catch (const engine::Error& e) {
    return e.what();
  }
  return "";
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "\"" << part << "\" not in: " << text;
}

TEST(DeviceFromSpec, CpuIsTheProcessWideCpuDevice) {
  Device& d = device_from_spec("cpu");
  EXPECT_EQ(&d, &cpu_device());
  EXPECT_EQ(d.type(), DeviceType::CPU);
  EXPECT_EQ(d.compute_stream(), nullptr);
  EXPECT_EQ(d.copy_stream(), nullptr);
}

TEST(DeviceFromSpec, AutoIsTheFirstGpuOrElseTheCpu) {
  const bool gpu = usable_cuda_devices() > 0;
  for (const std::string spec : {"auto", ""}) {
    Device& d = device_from_spec(spec);
    if (gpu) {
      EXPECT_EQ(d.type(), DeviceType::CUDA) << spec;
      EXPECT_EQ(d.index(), 0) << spec;
    } else {
      EXPECT_EQ(&d, &cpu_device()) << spec;
    }
  }
}

TEST(DeviceFromSpec, MalformedSpecsSayWhatIsValid) {
  for (const std::string spec : {"gpu", "CPU", "cuda0", "cuda 0", "tpu:0", " cpu"}) {
    const std::string e = error_of(spec);
    ASSERT_FALSE(e.empty()) << spec << " was accepted";
    expect_contains(e, "\"" + spec + "\"");
    expect_contains(e, "is not a device name");
    expect_contains(e, "\"cuda:N\"");
    expect_contains(e, "\"auto\"");
  }
  for (const std::string spec :
       {"cuda:x", "cuda:", "cuda:-1", "cuda:1x", "cuda:+1", "cuda:0.5", "cuda:99999999"}) {
    const std::string e = error_of(spec);
    ASSERT_FALSE(e.empty()) << spec << " was accepted";
    expect_contains(e, "\"" + spec + "\"");
    expect_contains(e, "is not a device index");
    expect_contains(e, "cuda:N");
  }
}

TEST(DeviceFromSpec, CudaWithoutAUsableGpuSaysWhyAndWhatToDo) {
  if (usable_cuda_devices() > 0)
    GTEST_SKIP() << "a GPU is visible; CudaDevicesAreCreatedOncePerIndex covers it";
  for (const std::string spec : {"cuda", "cuda:0", "cuda:3"}) {
    const std::string e = error_of(spec);
    ASSERT_FALSE(e.empty()) << spec << " was accepted without a GPU";
    expect_contains(e, "\"" + spec + "\"");
    expect_contains(e, "train.device = \"cpu\"");
    if (cuda_backend_built()) {
      expect_contains(e, "no CUDA device is visible");
      expect_contains(e, "CUDA_VISIBLE_DEVICES");
      expect_contains(e, "nvidia-smi");
    } else {
      expect_contains(e, "built without the CUDA backend");
      expect_contains(e, "nvcc was not found");
    }
  }
}

TEST(DeviceFromSpec, HiddenGpusAreNotUsable) {
  const char* env = std::getenv("CUDA_VISIBLE_DEVICES");
  if (env == nullptr || std::string(env) != "-1") GTEST_SKIP() << "run with CUDA_VISIBLE_DEVICES=-1";
  std::string why;
  EXPECT_EQ(usable_cuda_devices(&why), 0);
  EXPECT_FALSE(why.empty());
  EXPECT_EQ(&device_from_spec("auto"), &cpu_device());
  // A build without the CUDA backend says that instead (DeviceFromSpec.CudaWithoutTheBackend...).
  if (cuda_backend_built()) expect_contains(error_of("cuda"), "CUDA_VISIBLE_DEVICES=\"-1\"");
}

TEST(DeviceFromSpec, CudaDevicesAreCreatedOncePerIndex) {
  const int count = usable_cuda_devices();
  if (count == 0) GTEST_SKIP() << "no usable CUDA device";
  Device& a = device_from_spec("cuda");
  Device& b = device_from_spec("cuda:0");
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.type(), DeviceType::CUDA);
  EXPECT_EQ(a.index(), 0);
  EXPECT_NE(a.compute_stream(), nullptr);
  EXPECT_NE(a.copy_stream(), nullptr);
  EXPECT_EQ(a.stream(), a.compute_stream());
  EXPECT_EQ(&device_from_spec("auto"), &a);
  const std::string spec = "cuda:" + std::to_string(count);
  const std::string e = error_of(spec);
  expect_contains(e, "only " + std::to_string(count) + " CUDA device");
  expect_contains(e, "train.device = \"cpu\"");
}

}  // namespace
}  // namespace engine::rt
