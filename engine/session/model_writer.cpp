// Writing model weights (see model_writer.hpp).
#include "engine/session/model_writer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/io/safetensors_writer.hpp"
#include "engine/runtime/param_init.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace engine::session {

namespace {

bool is_saved(const rt::Param& p) {
  return !p.tied() && !(p.decl.flags & ENG_PARAM_NOT_SAVED) && p.decl.role != ENG_ROLE_ADAPTER;
}

void check_weight_dtype(eng_dtype dtype) {
  if (dtype != ENG_F32 && dtype != ENG_BF16 && dtype != ENG_F16)
    fail("model weights are written as float32, bfloat16 or float16, not {}", rt::dtype_name(dtype));
}

// One value as ParamStore holds it (double -> the storage dtype, as Tensor::copy_from rounds: through float)
// and then as write_model_safetensors converts it to the file's dtype (Tensor::to).
struct ValueRounding {
  rt::DType storage, file;
  void store(double x, std::byte* out) const {
    float v = static_cast<float>(x);
    if (storage == ENG_BF16) v = bf16_to_f32(f32_to_bf16(v));
    if (storage == ENG_F16) v = f16_to_f32(f32_to_f16(v));
    if (file == ENG_F32) {
      std::memcpy(out, &v, 4);
    } else {
      const uint16_t bits = file == ENG_BF16 ? f32_to_bf16(v) : f32_to_f16(v);
      std::memcpy(out, &bits, 2);
    }
  }
};

constexpr int64_t kChunk = int64_t{1} << 22;  // elements generated per write
constexpr int64_t kGrain = int64_t{1} << 16;  // at least this many per thread

void produce_initial_value(const rt::Param& p, uint64_t seed, eng_dtype dtype, cpu::ThreadPool& pool,
                           std::vector<std::byte>& buffer, const io::SafetensorsWriter::ByteSink& sink) {
  const ValueRounding rounding{p.trainable() ? ENG_F32 : p.decl.dtype, dtype};
  const size_t esize = rt::dtype_size(dtype);
  const int64_t n = p.shape().numel();
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t len = std::min(kChunk, n - begin);
    buffer.resize(static_cast<size_t>(len) * esize);
    pool.parallel_for(len, kGrain, [&](int64_t b, int64_t e) {
      std::vector<double> values(static_cast<size_t>(e - b));
      rt::initial_values(p.decl, seed, begin + b, values);
      std::byte* out = buffer.data() + static_cast<size_t>(b) * esize;
      for (size_t i = 0; i < values.size(); ++i) rounding.store(values[i], out + i * esize);
    });
    sink(std::span<const std::byte>(buffer.data(), buffer.size()));
  }
}

}  // namespace

void write_model_safetensors(rt::ParamStore& store, const std::filesystem::path& file, eng_dtype dtype) {
  check_weight_dtype(dtype);
  io::SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  for (size_t i = 0; i < store.size(); ++i) {
    rt::Param& p = store.at(i);
    if (!is_saved(p)) continue;
    rt::Tensor value = store.value(p);
    if (value.dtype() != dtype) value = value.to(dtype);
    std::vector<std::byte> bytes(value.nbytes());
    value.contiguous().copy_to_host(bytes.data(), bytes.size());
    writer.add(p.name(), dtype, p.shape().vec(), std::span<const std::byte>(bytes));
  }
  writer.write(file);
}

WrittenModel write_initial_model(const rt::ParamStore& store, const std::filesystem::path& dir,
                                 const InitialModelOptions& options) {
  check_weight_dtype(options.dtype);
  if (options.max_shard_bytes == 0) fail("the maximum shard size must be positive");
  const size_t esize = rt::dtype_size(options.dtype);

  // Shards as transformers cuts them: state-dict order, a new shard when the next tensor would overflow.
  std::vector<std::vector<const rt::Param*>> shards;
  uint64_t shard_bytes = 0;
  WrittenModel written;
  for (size_t i = 0; i < store.size(); ++i) {
    const rt::Param& p = store.at(i);
    if (!is_saved(p)) continue;
    if (p.value.defined() || p.quantized() || p.loaded) {
      fail(
          "cannot write the initial value of parameter '{}': it already holds a value (write_initial_model "
          "writes declared initialisations only)",
          p.name());
    }
    const uint64_t bytes = static_cast<uint64_t>(p.shape().numel()) * esize;
    if (shards.empty() || (shard_bytes > 0 && shard_bytes + bytes > options.max_shard_bytes)) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(&p);
    shard_bytes += bytes;
    written.total_bytes += bytes;
    ++written.tensors;
  }
  if (shards.empty()) fail("the model declares no parameters to write");

  const size_t n_shards = shards.size();
  auto shard_name = [&](size_t k) {
    return n_shards == 1 ? std::string("model.safetensors")
                         : fmt::format("model-{:05d}-of-{:05d}.safetensors", k + 1, n_shards);
  };
  cpu::ThreadPool pool(options.threads);
  std::vector<std::byte> buffer;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t k = 0; k < n_shards; ++k) {
    io::SafetensorsWriter writer;
    writer.set_metadata("format", "pt");
    std::map<std::string, const rt::Param*> by_name;
    for (const rt::Param* p : shards[k]) {
      writer.add_streamed(p->name(), io::from_eng_dtype(options.dtype), p->shape().vec());
      by_name[p->name()] = p;
      weight_map[p->name()] = shard_name(k);
    }
    const std::filesystem::path file = dir / shard_name(k);
    uint64_t bytes = 0;
    for (const rt::Param* p : shards[k]) bytes += static_cast<uint64_t>(p->shape().numel()) * esize;
    spdlog::info("writing {} ({} tensors, {:.2f} GB) in {}", shard_name(k), shards[k].size(), bytes / 1e9,
                 dir.string());
    writer.write(file, [&](const std::string& name, const io::SafetensorsWriter::ByteSink& sink) {
      produce_initial_value(*by_name.at(name), store.seed(), options.dtype, pool, buffer, sink);
    });
    written.files.push_back(shard_name(k));
  }
  if (n_shards > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", written.total_bytes}}}, {"weight_map", weight_map}};
    io::write_file_atomic(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  return written;
}

}  // namespace engine::session
