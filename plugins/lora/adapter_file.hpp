// The files of a PEFT adapter, read and written without the engine's IO library (plugins see the SDK only):
//   adapter_model.safetensors   8-byte little-endian header length, a JSON header
//                               {"<key>": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
//                               {...}} padded with spaces to a multiple of 8, then the raw little-endian data
//   adapter_config.json         PEFT's LoraConfig fields
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lora {

struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major
};

// Writes F32 tensors in key order with {"format": "pt"} metadata, as safetensors' save_file does.
void write_safetensors(const std::string& path, const std::map<std::string, HostTensor>& tensors);
// Reads every tensor (F32, F64, BF16 or F16) converted to float. Throws engine::sdk::Error naming the file.
std::map<std::string, HostTensor> read_safetensors(const std::string& path);

// A JSON string literal with the escapes JSON needs.
std::string json_quote(const std::string& s);

std::string read_text_file(const std::string& path);
void write_text_file(const std::string& path, const std::string& text);

}  // namespace lora
