// layers: model parallelism in one process, the way Hugging Face's device_map places a model: consecutive
// decoder blocks on each device, the hidden states moved from one device to the next (their gradients back),
// so that a model too big for one device trains without a launcher. One device computes at a time; for
// several devices busy at once use pp (a pipeline of processes).
//
// Placement (place_layers, ABI 1.1): `blocks` gives the blocks of each device; else `placement = "balanced"`
// cuts the blocks so that the devices' parameter memory (weights, and for trainable ones their gradient and
// AdamW's two moments) is as even as a contiguous cut allows over `devices` devices, and `"sequential"` fills
// device 0 up to `max_memory_gib` (default: the device's memory) before it moves on to the next. The embedding
// lives on device 0, the final norm and the lm_head on the last used device (a tied embedding on device 0: the
// loss is then computed there), a PEFT adapter with the projection it adapts.
//
// On the CPU the devices are simulated (each its own allocator and memory count; the engine's
// engine/runtime/layer_devices.hpp): that proves the placement, the moves and the losses without GPUs.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/cpp/parallel.hpp"
#include "plugins/common/block_placement.hpp"
#include "plugins/common/strategy_options.hpp"

namespace {

using engine::sdk::Host;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "devices": {"type": "integer", "minimum": 1, "description": "devices to place the blocks on; default: every device of the run (on the CPU, where the devices are simulated, it must be given)"},
  "placement": {"type": "string", "enum": ["balanced", "sequential"], "default": "balanced", "description": "balanced: even parameter memory over the devices; sequential: fill each device up to max_memory_gib before the next"},
  "blocks": {"type": "array", "items": {"type": "integer", "minimum": 1}, "description": "decoder blocks of each device, first to last (summing to the model's layers); overrides placement"},
  "max_memory_gib": {"type": "number", "exclusiveMinimum": 0, "description": "sequential: the parameter memory each device takes before the next one is used; default: the device's memory"}
}})json";

std::string str(int64_t v) { return std::to_string(v); }
// "13.20 GiB", or "1.41 MiB" below a tenth of a GiB (the tiny models of the tests).
std::string size(int64_t bytes) {
  const double b = static_cast<double>(bytes), g = b / (1024.0 * 1024.0 * 1024.0);
  char buf[32];
  if (g >= 0.1)
    std::snprintf(buf, sizeof buf, "%.2f GiB", g);
  else
    std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024.0));
  return buf;
}

class Layers : public engine::sdk::Parallel {
 public:
  Layers(Host&, const std::string& options_json) {
    namespace common = engine::plugins_common;
    const engine::sdk::Json o =
        common::parse_strategy_options("layers", options_json, {"devices", "placement", "blocks", "max_memory_gib"});
    if (o.contains("devices")) {
      const double d = o.get("devices", 0.0);
      if (!(d >= 1) || d != static_cast<double>(static_cast<int64_t>(d)))
        throw engine::sdk::Error("layers: devices must be a whole number >= 1, got " + std::to_string(d));
      devices_ = static_cast<int64_t>(d);
    }
    placement_ = o.contains("placement") ? o["placement"].as_string() : std::string("balanced");
    if (placement_ != "balanced" && placement_ != "sequential")
      throw engine::sdk::Error("layers: placement = '" + placement_ + "'; use balanced or sequential");
    if (o.contains("blocks")) {
      for (const engine::sdk::Json& v : o["blocks"].items()) {
        const int64_t n = v.as_int();
        if (n < 1) throw engine::sdk::Error("layers: every entry of blocks must be >= 1 block, got " + str(n));
        blocks_.push_back(n);
      }
      if (blocks_.empty()) throw engine::sdk::Error("layers: blocks is empty; give the blocks of each device, or leave it out");
      if (devices_ > 0 && devices_ != static_cast<int64_t>(blocks_.size()))
        throw engine::sdk::Error("layers: blocks lists " + str(static_cast<int64_t>(blocks_.size())) +
                                 " devices but devices = " + str(devices_) + "; give one entry per device");
    }
    if (o.contains("max_memory_gib")) {
      const double g = o.get("max_memory_gib", 0.0);
      if (!(g > 0)) throw engine::sdk::Error("layers: max_memory_gib must be > 0");
      if (placement_ != "sequential" || !blocks_.empty())
        throw engine::sdk::Error("layers: max_memory_gib is the budget of placement = \"sequential\"; set that "
                                 "placement (without blocks) or remove max_memory_gib");
      max_memory_ = static_cast<int64_t>(g * 1024.0 * 1024.0 * 1024.0);
    }
  }

  void setup(Host& host) override {
    if (host.world_size() > 1)
      throw engine::sdk::Error("layers: places one process's model on its devices, but the job has " +
                                   str(host.world_size()) +
                                   " processes; run it without --nproc-per-node, or use pp (one process per "
                                   "device), ddp or fsdp",
                               ENG_ERR_UNSUPPORTED);
  }

  void place_layers(Host& host, const eng_model_info& model, eng_layer_map& map) override {
    namespace common = engine::plugins_common;
    const int64_t layers = model.n_layers;
    int64_t devices = !blocks_.empty() ? static_cast<int64_t>(blocks_.size()) : devices_;
    if (devices == 0) {
      if (map.available == 0)
        throw engine::sdk::Error("layers: on the CPU the devices are simulated; say how many with "
                                 "parallel.devices (e.g. --set parallel.devices=2)",
                                 ENG_ERR_INVALID_ARGUMENT);
      devices = map.available;
    }
    if (map.available > 0 && devices > map.available)
      throw engine::sdk::Error("layers: " + str(devices) + " devices asked for, " + str(map.available) +
                                   " visible; lower parallel.devices (or make more visible: CUDA_VISIBLE_DEVICES)",
                               ENG_ERR_INVALID_ARGUMENT);
    if (devices > layers && (placement_ == "balanced" || !blocks_.empty()))
      throw engine::sdk::Error("layers: " + str(devices) + " devices need at least as many decoder blocks; the model "
                                   "has " + str(layers) + ": use devices <= " + str(layers),
                               ENG_ERR_INVALID_ARGUMENT);
    const common::BlockParams bp(host, model);
    std::vector<int64_t> cost;
    int64_t head = 0, tail = 0;
    bp.costs(layers, cost, head, tail);
    for (const engine::sdk::ParamInfo& info : bp.infos)
      if ((info.flags & ENG_PARAM_QUANTIZED) != 0)
        throw engine::sdk::Error("layers: parameter " + info.name +
                                     " is quantized; placing quantized base weights on several devices is not "
                                     "implemented (layers lacks ENG_PAR_CAP_QUANTIZED): drop [quantizer] or use one "
                                     "device",
                                 ENG_ERR_UNSUPPORTED);

    std::vector<int64_t> counts = blocks_;
    if (counts.empty() && placement_ == "balanced") counts = common::balanced_cut(cost, devices, head, tail);
    if (counts.empty()) counts = sequential(cost, devices, head, tail, map.device_bytes);
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    if (total != layers)
      throw engine::sdk::Error("layers: blocks add up to " + str(total) + " blocks, the model has " + str(layers) +
                                   "; make them sum to " + str(layers),
                               ENG_ERR_INVALID_ARGUMENT);
    const int64_t used = static_cast<int64_t>(counts.size());
    std::vector<int64_t> bytes(static_cast<size_t>(used), 0);
    for (int64_t d = 0, b = 0; d < used; ++d)
      for (int64_t k = 0; k < counts[static_cast<size_t>(d)]; ++k, ++b) {
        map.block_device[b] = static_cast<int32_t>(d);
        bytes[static_cast<size_t>(d)] += cost[static_cast<size_t>(b)];
      }
    bytes.front() += head;
    bytes.back() += tail;
    for (size_t i = 0; i < bp.infos.size(); ++i) {
      const int32_t b = bp.block[i];
      int32_t d = 0;
      if (b >= 0) {
        if (b >= layers)
          throw engine::sdk::Error("layers: parameter " + bp.infos[i].name + " belongs to block " + str(b) +
                                       " of a model with " + str(layers) + " blocks",
                                   ENG_ERR_INTERNAL);
        d = map.block_device[b];
      } else if (b == common::BlockParams::kLast) {
        d = static_cast<int32_t>(used - 1);
      }  // kFirst, kBoth: device 0 (a tied embedding: the loss is computed there)
      map.param_device[i] = d;
    }
    map.devices = static_cast<int32_t>(used);
    std::string where;
    for (int64_t d = 0, first = 0; d < used; first += counts[static_cast<size_t>(d)], ++d)
      where += (d ? ", " : "") + std::string("[") + str(first) + ", " + str(first + counts[static_cast<size_t>(d)]) +
               ") " + size(bytes[static_cast<size_t>(d)]);
    host.info("layers: " + str(used) + " devices (" + (blocks_.empty() ? placement_ : std::string("blocks")) +
              "), blocks and parameter memory per device: " + where);
  }

 private:
  // Fill each device with blocks up to the budget before the next; the embedding counts on the first, the final
  // norm and lm_head on the last one used.
  std::vector<int64_t> sequential(const std::vector<int64_t>& cost, int64_t devices, int64_t head, int64_t tail,
                                  int64_t device_bytes) const {
    const int64_t budget = max_memory_ > 0 ? max_memory_ : device_bytes;
    if (budget <= 0)
      throw engine::sdk::Error("layers: placement = \"sequential\" needs the memory of each device, which is not "
                                   "known here; give parallel.max_memory_gib",
                               ENG_ERR_INVALID_ARGUMENT);
    auto too_big = [&](const std::string& what, int64_t need) {
      return engine::sdk::Error("layers: the model's parameters do not fit " + str(devices) + " devices of " +
                                    size(budget) + " each placed sequentially: " + what + " needs " + size(need) +
                                    " alone; use a larger max_memory_gib, or placement = \"balanced\"",
                                ENG_ERR_OUT_OF_MEMORY);
    };
    std::vector<int64_t> counts{0};
    int64_t on = head;
    for (size_t b = 0; b < cost.size(); ++b) {
      if (on + cost[b] > budget && counts.back() > 0) {
        counts.push_back(0);
        on = 0;
      }
      if (on + cost[b] > budget)
        throw too_big(b == 0 ? std::string("block 0 with the embedding") : "block " + str(static_cast<int64_t>(b)),
                      on + cost[b]);
      on += cost[b];
      ++counts.back();
    }
    if (on + tail > budget) {  // the final norm and lm_head do not fit beside the last blocks
      if (counts.back() == 1 || cost.back() + tail > budget)
        throw too_big("the last block with the final norm and lm_head", cost.back() + tail);
      --counts.back();
      counts.push_back(1);
    }
    if (static_cast<int64_t>(counts.size()) > devices)
      throw engine::sdk::Error("layers: the model's parameters do not fit " + str(devices) + " devices of " +
                                   size(budget) + " each placed sequentially (they need " +
                                   str(static_cast<int64_t>(counts.size())) +
                                   "); use more devices, a larger max_memory_gib, or placement = \"balanced\"",
                               ENG_ERR_OUT_OF_MEMORY);
    return counts;
  }

  int64_t devices_ = 0;  // 0: every available one
  std::string placement_;
  std::vector<int64_t> blocks_;
  int64_t max_memory_ = 0;
};

}  // namespace

ENGINE_REGISTER_PARALLEL(Layers, "layers", "0.1.0",
                         "model parallelism in one process: consecutive blocks on each device (device_map style)",
                         kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA)
