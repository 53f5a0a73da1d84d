// The host table's tensor-file entries: a state dictionary written to or read from a safetensors file, with
// the file's string metadata given as JSON.
#include <cstddef>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/host/entry_args.hpp"
#include "engine/host/entry_guard.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/host_entries.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/io/safetensors_writer.hpp"

namespace engine::host {

using rt::Tensor;

namespace {

std::string path_arg(const char* path) {
  if (path == nullptr) fail("the path is NULL; pass the file to use");
  if (*path == '\0') fail("the path is empty; pass the file to use");
  return path;
}

// metadata_json: NULL or a JSON object whose values are all strings ({"format": "pt"}).
std::map<std::string, std::string> metadata_arg(const char* metadata_json, const std::string& path) {
  std::map<std::string, std::string> out;
  if (metadata_json == nullptr) return out;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(metadata_json);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
    fail(
        "the metadata for {} is not valid JSON ({}); "
        "pass an object of strings such as {{\"format\": \"pt\"}}",
        path, e.what());
  }
  if (!j.is_object())
    fail("the metadata for {} is a JSON {}, not an object of strings such as {{\"format\": \"pt\"}}", path,
         j.type_name());
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string())
      fail("metadata entry '{}' for {} is a JSON {}; safetensors metadata values must be strings", key, path,
           value.type_name());
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

}  // namespace

eng_status h_safetensors_write(const eng_ctx* ctx, const char* path, eng_state st,
                               const char* metadata_json) {
  return guarded(ctx, "safetensors_write", [&] {
    session_of(ctx);
    const std::string file = path_arg(path);
    const rt::StateDict& dict = state_arg(st);
    io::SafetensorsWriter w;
    for (const auto& [key, value] : dict.entries()) {
      Tensor c = value.contiguous();
      std::vector<std::byte> bytes(c.nbytes());
      c.copy_to_host(bytes.data(), bytes.size());
      try {
        w.add(key, c.dtype(), c.shape().vec(), bytes);
      } catch (const Error& e) {
        fail_with(e.status(), "{}: tensor '{}': {}", file, key, e.what());
      }
    }
    for (auto& [key, value] : metadata_arg(metadata_json, file)) w.set_metadata(key, value);
    w.write(file);
  });
}

eng_status h_safetensors_read(const eng_ctx* ctx, const char* path, eng_state* out) {
  return guarded(ctx, "safetensors_read", [&] {
    if (out == nullptr) fail("the output pointer is NULL");
    *out = nullptr;
    HostSession& s = session_of(ctx);
    rt::Device& device = device_for(ctx, s);
    const std::string file = path_arg(path);
    io::SafetensorsFile f = io::SafetensorsFile::open(file);
    auto dict = std::make_unique<rt::StateDict>();
    dict->set_plugin_owned();
    for (const io::SafetensorsTensor& t : f.tensors()) {
      if (!t.engine_dtype)
        fail_with(ENG_ERR_UNSUPPORTED,
                  "{}: tensor '{}' has dtype {}, which the engine has no tensor type for (it has F32, BF16, "
                  "F16, F64, I32, I64, U8, I8, BOOL); convert the file",
                  file, t.name, t.dtype_name);
      const rt::Dims shape = rt::Dims::from(t.shape.data(), static_cast<int>(t.shape.size()));
      dict->put(std::string(t.name), Tensor::from_host(shape, *t.engine_dtype, device, t.data, t.nbytes));
    }
    *out = state_handle(*dict.release());
  });
}

}  // namespace engine::host
