// int8_absmax: frozen projection weights stored as int8 with one fp32 scale per output row (absmax), as an
// out-of-tree quantizer written against the SDK alone (docs/PLUGINS.md, "Quantizer").
//
//   s[o] = max_i |W[o,i]| / 127          q[o,i] = round(W[o,i] / s[o])  in [-127, 127]      (1 + 4/in bytes)
//   y = x (s * q)^T = (x q^T) * s        dx = (dy * s) q                                      (W takes no grad)
//
// The op table has no int8 cast, so the product is a custom op with this file's own CPU kernel reading the
// tensors through DLPack: x (N, in) f32, q (out, in) i8, s (out) f32 -> y (N, out) f32. CPU only (the
// capabilities say so; a CUDA build of the engine refuses it on train.device = "cuda" at validation).
// skip_modules: modules to leave in full precision, matched by the engine's one matcher (host target_match).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/cpp/custom_op.hpp"
#include "engine/cpp/quantizer.hpp"

namespace {

using engine::sdk::Error;
using engine::sdk::Host;
using engine::sdk::Param;
using engine::sdk::ParamInfo;
using engine::sdk::Tensor;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "skip_modules": {"type": "array", "items": {"type": "string"}, "default": ["lm_head"], "description": "modules kept in full precision (names or dotted suffixes, the engine's matcher)"}
}})json";

struct Int8Weight : engine::sdk::Quantizer::State {
  Tensor q;  // (out, in) i8
  Tensor s;  // (out) f32
};

// y (N, out) = (x (N, in) q^T) * s; backward dx = (dy * s) q. Inputs: x, q, s.
class Int8Matmul : public engine::sdk::CustomOp {
 public:
  std::vector<Tensor> forward(Host& host, const std::vector<Tensor>& in, const void*) override {
    const Tensor& x = in[0];
    const int64_t out = in[1].shape()[0], k = in[1].shape()[1], n = x.numel() / k;
    std::vector<int64_t> shape = x.shape();
    shape.back() = out;
    Tensor y = host.empty(ENG_F32, shape);
    const float* xp = x.data<float>();
    const int8_t* qp = in[1].data<int8_t>();
    const float* sp = in[2].data<float>();
    float* yp = y.data<float>();
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        float acc = 0.0f;
        for (int64_t i = 0; i < k; ++i) acc += xp[r * k + i] * static_cast<float>(qp[o * k + i]);
        yp[r * out + o] = acc * sp[o];
      }
    }
    return {y};
  }
  std::vector<Tensor> backward(Host& host, const std::vector<Tensor>& in, const std::vector<Tensor>&,
                               const std::vector<Tensor>& grad_out, const void*,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0]) return {Tensor(), Tensor(), Tensor()};
    const int64_t out = in[1].shape()[0], k = in[1].shape()[1], n = in[0].numel() / k;
    const Tensor dy = host.contiguous(grad_out[0]);
    Tensor dx = host.zeros(ENG_F32, in[0].shape());
    const float* dyp = dy.data<float>();
    const int8_t* qp = in[1].data<int8_t>();
    const float* sp = in[2].data<float>();
    float* dxp = dx.data<float>();
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        const float g = dyp[r * out + o] * sp[o];
        for (int64_t i = 0; i < k; ++i) dxp[r * k + i] += g * static_cast<float>(qp[o * k + i]);
      }
    }
    return {dx, Tensor(), Tensor()};
  }
};

class Int8Absmax : public engine::sdk::Quantizer {
 public:
  Int8Absmax(Host& host, const std::string& options_json) : api_(host.api()) {
    const nlohmann::json o = nlohmann::json::parse(options_json.empty() ? "{}" : options_json);
    skip_ = o.value("skip_modules", nlohmann::json::array({"lm_head"})).dump();
    id_ = op_.register_with(host, "int8_absmax.matmul", 3, 1, 0);
  }

  // takes() has no context: the matcher is asked without one (allowed for a list of names).
  bool takes(const ParamInfo& p) override {
    if (p.role != ENG_ROLE_LINEAR || p.trainable() || p.shape.size() != 2) return false;
    if (skip_ == "[]") return true;
    int32_t skipped = 0;
    if (api_->target_match(nullptr, skip_.c_str(), p.name.c_str(), &skipped) != ENG_OK)
      throw Error("int8_absmax: skip_modules " + skip_ + " is not a list of module names", ENG_ERR_INVALID_ARGUMENT);
    return skipped == 0;
  }

  std::unique_ptr<State> quantize(Host& host, Param, const Tensor& value) override {
    const int64_t out = value.shape()[0], k = value.shape()[1];
    std::vector<float> w = host.to_vector<float>(host.cast(value, ENG_F32));
    std::vector<int8_t> q(w.size());
    std::vector<float> s(static_cast<size_t>(out));
    for (int64_t o = 0; o < out; ++o) {
      float amax = 0.0f;
      for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(w[static_cast<size_t>(o * k + i)]));
      const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
      s[static_cast<size_t>(o)] = scale;
      for (int64_t i = 0; i < k; ++i) {
        const float v = std::nearbyint(w[static_cast<size_t>(o * k + i)] / scale);
        q[static_cast<size_t>(o * k + i)] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
      }
    }
    auto st = std::make_unique<Int8Weight>();
    st->q = host.from_host(ENG_I8, {out, k}, q.data(), q.size());
    st->s = host.from_vector<float>({out}, s);
    return st;
  }

  // x (..., in) -> (..., out)
  Tensor linear(Host& host, State& state, const Tensor& x) override {
    auto& w = static_cast<Int8Weight&>(state);
    if (!x.is_cpu() || x.dtype() != ENG_F32)
      throw Error("int8_absmax: its kernel runs on fp32 CPU activations only; train on the CPU with dtype fp32",
                  ENG_ERR_UNSUPPORTED);
    return host.custom(id_, {host.contiguous(x), w.q, w.s}, nullptr, 1)[0];
  }

  Tensor dequantize(Host& host, State& state, eng_dtype dtype) override {
    auto& w = static_cast<Int8Weight&>(state);
    const int64_t out = w.q.shape()[0], k = w.q.shape()[1];
    const int8_t* q = w.q.data<int8_t>();
    const float* s = w.s.data<float>();
    std::vector<float> d(static_cast<size_t>(out * k));
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < k; ++i) d[static_cast<size_t>(o * k + i)] = static_cast<float>(q[o * k + i]) * s[o];
    Tensor dense = host.from_vector<float>({out, k}, d);
    return dtype == ENG_F32 ? dense : host.cast(dense, dtype);
  }

  double bytes_per_element() override { return 1.0; }

 private:
  const eng_host_api* api_;  // valid for the life of the process; contexts are not kept
  std::string skip_;
  Int8Matmul op_;
  eng_op_id id_ = 0;
};

}  // namespace

ENGINE_REGISTER_QUANTIZER(Int8Absmax, "int8_absmax", "0.1.0",
                          "int8 absmax weights (one scale per row) with its own CPU kernel, an out-of-tree example",
                          kSchema, ENG_CAP_DEVICE_CPU | ENG_QUANT_CAP_FROZEN_ONLY)
