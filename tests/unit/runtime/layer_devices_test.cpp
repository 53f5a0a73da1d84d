// The simulated CPU devices of a layer placement (engine/runtime/layer_devices.hpp) and the to_device op
// (engine/runtime/ops/to_device.hpp): each device counts its own memory, the ops refuse inputs of two devices,
// and a value moved to another device brings its gradient back to where it came from.
#include "engine/runtime/layer_devices.hpp"

#include <gtest/gtest.h>

#include "engine/core/error.hpp"
#include "engine/runtime/autograd.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "engine/runtime/ops/to_device.hpp"

namespace engine::rt {
namespace {

TEST(LayerDevices, SimulatedDevicesCountTheirOwnMemoryAndAreCreatedOnce) {
  Device& cpu = cpu_device();
  EXPECT_EQ(layer_devices_available(cpu), 0);  // any number
  const std::vector<Device*> d = layer_devices(cpu, 3);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0], &cpu);
  EXPECT_EQ(d[1]->index(), 1);
  EXPECT_EQ(d[2]->index(), 2);
  EXPECT_EQ(layer_devices(cpu, 2)[1], d[1]);  // the same device for the same index
  const int64_t before1 = d[1]->memory_stats().current_bytes, before0 = cpu.memory_stats().current_bytes;
  {
    Tensor t = Tensor::zeros(Dims{1000}, ENG_F32, *d[1]);
    EXPECT_EQ(d[1]->memory_stats().current_bytes - before1, 4000);
    EXPECT_EQ(cpu.memory_stats().current_bytes, before0);  // not on device 0
  }
  EXPECT_EQ(d[1]->memory_stats().current_bytes, before1);
  EXPECT_THROW(layer_devices(cpu, 0), Error);
}

TEST(LayerDevices, OpsRefuseInputsOfTwoDevices) {
  Device& other = *layer_devices(cpu_device(), 2)[1];
  Tensor a = Tensor::from_vector(Dims{2}, ENG_F32, cpu_device(), std::vector<float>{1, 2});
  Tensor b = Tensor::from_vector(Dims{2}, ENG_F32, other, std::vector<float>{3, 4});
  Tape tape;
  try {
    tape.apply(ops::make_add(), {a, b});
    FAIL() << "mixed devices were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inputs live on different devices"), std::string::npos) << e.what();
  }
}

TEST(LayerDevices, ToDeviceMovesTheValueAndItsGradientBack) {
  Device& other = *layer_devices(cpu_device(), 2)[1];
  Tape tape;
  Tensor x0 = Tensor::from_vector(Dims{3}, ENG_F32, cpu_device(), std::vector<float>{1, -2, 3});
  auto sink = std::make_shared<GradSink>(x0.shape(), ENG_F32, cpu_device());
  Tensor x = tape.leaf(x0, sink);
  Tensor y = tape.apply(ops::make_to_device(other), {x}).at(0);
  EXPECT_EQ(&y.device(), &other);
  EXPECT_EQ(y.to_float_vector(), (std::vector<float>{1, -2, 3}));
  Tensor z = tape.apply(ops::make_mul(), {y, y}).at(0);  // on the other device
  Tensor loss = tape.apply(ops::make_sum(), {z}).at(0);
  tape.backward(loss);
  ASSERT_TRUE(sink->grad().defined());
  EXPECT_EQ(&sink->grad().device(), &cpu_device());
  EXPECT_EQ(sink->grad().to_float_vector(), (std::vector<float>{2, -4, 6}));
}

}  // namespace
}  // namespace engine::rt
