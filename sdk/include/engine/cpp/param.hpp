// engine/cpp/param.hpp: parameters as plugins see them: Param (a non-owning handle into the engine's
// parameter store), ParamDecl (what a model or PEFT method declares) and ParamInfo (what the store says about
// one).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/abi/engine.h"

namespace engine::sdk {

// A handle to a parameter; the engine owns it for the whole run. Empty (null) when a lookup found nothing.
class Param {
 public:
  Param() = default;
  explicit Param(eng_param p) noexcept : p_(p) {}
  eng_param get() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  friend bool operator==(Param a, Param b) noexcept { return a.p_ == b.p_; }
  friend bool operator!=(Param a, Param b) noexcept { return a.p_ != b.p_; }

 private:
  eng_param p_ = nullptr;
};

// A parameter declaration (see eng_param_decl). Trailing arguments may be left out. Example, a projection
// weight:
//   host.declare({"model.layers.0.self_attn.q_proj.weight", {out, in}, ENG_BF16, ENG_ROLE_LINEAR});
//   host.declare({"lora_B", {out, r}, ENG_F32, ENG_ROLE_ADAPTER, ENG_PARAM_TRAINABLE, ENG_INIT_ZEROS});
struct ParamDecl {
  ParamDecl(std::string name_, std::vector<int64_t> shape_, eng_dtype dtype_ = ENG_F32,
            eng_param_role role_ = ENG_ROLE_OTHER, uint32_t flags_ = 0, eng_init_kind init_ = ENG_INIT_ZEROS,
            double init_arg_ = 0.0, std::string tied_to_ = std::string())
      : name(std::move(name_)),
        shape(std::move(shape_)),
        dtype(dtype_),
        role(role_),
        flags(flags_),
        init(init_),
        init_arg(init_arg_),
        tied_to(std::move(tied_to_)) {}

  std::string name;            // Hugging Face name
  std::vector<int64_t> shape;  // at most ENG_MAX_DIMS dims
  eng_dtype dtype;
  eng_param_role role;
  uint32_t flags;      // ENG_PARAM_*
  eng_init_kind init;  // used when no checkpoint provides the value
  double init_arg;
  std::string tied_to;  // with ENG_PARAM_TIED: the parameter whose storage it shares
};

// What the parameter store knows about a parameter (a copy; see eng_param_info).
struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  eng_dtype dtype = ENG_F32;
  eng_param_role role = ENG_ROLE_OTHER;
  uint32_t flags = 0;
  int32_t block = -1;  // decoder block it was declared in, -1 outside blocks

  bool trainable() const noexcept { return (flags & ENG_PARAM_TRAINABLE) != 0; }
  bool no_decay() const noexcept { return (flags & ENG_PARAM_NO_DECAY) != 0; }
  bool quantized() const noexcept { return (flags & ENG_PARAM_QUANTIZED) != 0; }
  int64_t numel() const noexcept {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }

  static ParamInfo from_abi(const eng_param_info& in) {
    ParamInfo out;
    out.name = in.name != nullptr ? in.name : "";
    int32_t nd = in.ndim < 0 ? 0 : (in.ndim > ENG_MAX_DIMS ? ENG_MAX_DIMS : in.ndim);
    out.shape.assign(in.shape, in.shape + nd);
    out.dtype = in.dtype;
    out.role = in.role;
    out.flags = in.flags;
    out.block = in.block;
    return out;
  }
};

}  // namespace engine::sdk
