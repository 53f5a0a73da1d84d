// engine/cpp/sdk.hpp: every header of the SDK's C++ wrappers (C++17, header-only). A plugin includes this
// (or just the header of its kind) and links nothing but EngineSDK::sdk.
//   error.hpp      engine::sdk::Error, status_name, the exception edge
//   dtype.hpp      dtype_of<T>, dtype_size, dtype_name
//   tensor.hpp     Tensor: RAII reference to an engine tensor, shape/dtype queries, DLPack view
//   param.hpp      Param, ParamDecl, ParamInfo
//   host.hpp       Host: every host service and op, throwing Error on failure; NoGrad; Block
//   json.hpp       Json: typed, key-naming view (over nlohmann/json) of options_json and config.json
//   custom_op.hpp  CustomOp: a forward/backward pair with the plugin's own kernels
//   model.hpp quantizer.hpp peft.hpp optimizer.hpp parallel.hpp: base classes + ENGINE_REGISTER_<KIND>
#pragma once

#include "engine/cpp/custom_op.hpp"
#include "engine/cpp/dtype.hpp"
#include "engine/cpp/error.hpp"
#include "engine/cpp/host.hpp"
#include "engine/cpp/json.hpp"
#include "engine/cpp/model.hpp"
#include "engine/cpp/optimizer.hpp"
#include "engine/cpp/parallel.hpp"
#include "engine/cpp/param.hpp"
#include "engine/cpp/peft.hpp"
#include "engine/cpp/quantizer.hpp"
#include "engine/cpp/tensor.hpp"
