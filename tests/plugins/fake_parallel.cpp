// A test parallel strategy: averages gradients over ranks before the step. The variant with
// ENG_PAR_CAP_SHARDS_PARAMS stands in for fsdp/zero3 in the recipe capability tests.
#include <string>

#include "engine/cpp/parallel.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Param;
using engine::sdk::Tensor;

constexpr char kSchema[] = R"({"type": "object", "properties": {
  "bucket_mb": {"type": "number", "default": 25, "minimum": 0, "description": "gradient bucket size in MiB"}
}})";

class FakeParallel : public engine::sdk::Parallel {
 public:
  FakeParallel(Host&, const std::string&) {}
  void setup(Host&) override {}
  void before_step(Host& host) override {
    for (Param p : host.params()) {
      Tensor g = host.grad(p);
      if (!g) continue;
      host.all_reduce_sum(g);
      host.axpby_(g, 1.0 / host.world_size(), g, 0.0);
    }
  }
};

}  // namespace

ENGINE_REGISTER_PARALLEL(FakeParallel, FAKE_NAME, "0.0.1", "test strategy (gradient all-reduce)", kSchema,
                         FAKE_CAPS)
