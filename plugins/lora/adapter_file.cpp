#include "adapter_file.hpp"

#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/cpp/error.hpp"
#include "engine/cpp/json.hpp"

namespace lora {

using engine::sdk::Error;
using engine::sdk::Json;

namespace {

float bf16_to_float(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {
      exp = 113;
      while ((mant & 0x400u) == 0) mant <<= 1, --exp;
      bits = sign | (exp << 23) | ((mant & 0x3FFu) << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot read " + path + ": no such file or not readable", ENG_ERR_IO);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error("cannot write " + path, ENG_ERR_IO);
  f << text;
  if (!f.flush()) throw Error("cannot write " + path + " (disk full?)", ENG_ERR_IO);
}

void write_safetensors(const std::string& path, const std::map<std::string, HostTensor>& tensors) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t offset = 0;
  for (const auto& [key, t] : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (n != static_cast<int64_t>(t.values.size())) {
      throw Error("adapter tensor " + key + ": shape and value count disagree", ENG_ERR_INTERNAL);
    }
    header += ',';
    header += json_quote(key);
    header += ":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i > 0) header += ',';
      header += std::to_string(t.shape[i]);
    }
    const uint64_t end = offset + t.values.size() * sizeof(float);
    header += "],\"data_offsets\":[";
    header += std::to_string(offset);
    header += ',';
    header += std::to_string(end);
    header += "]}";
    offset = end;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error("cannot write " + path, ENG_ERR_IO);
  const uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  f.write(reinterpret_cast<const char*>(len), 8);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& [key, t] : tensors) {
    (void)key;
    f.write(reinterpret_cast<const char*>(t.values.data()),
            static_cast<std::streamsize>(t.values.size() * sizeof(float)));
  }
  if (!f.flush()) throw Error("cannot write " + path + " (disk full?)", ENG_ERR_IO);
}

std::map<std::string, HostTensor> read_safetensors(const std::string& path) {
  const std::string bytes = read_text_file(path);
  if (bytes.size() < 8)
    throw Error(path + " is not a safetensors file (shorter than its 8-byte header length)", ENG_ERR_IO);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[static_cast<size_t>(i)])) << (8 * i);
  if (n > bytes.size() - 8)
    throw Error(path + " is not a safetensors file (header length beyond the file)", ENG_ERR_IO);
  Json header;
  try {
    header = Json::parse(bytes.substr(8, n));
  } catch (const std::exception& e) {
    throw Error(path + ": malformed safetensors header: " + e.what(), ENG_ERR_IO);
  }
  const size_t data0 = 8 + n;
  std::map<std::string, HostTensor> out;
  for (const auto& [key, entry] : header.members()) {
    if (key == "__metadata__") continue;
    HostTensor t;
    int64_t count = 1;
    for (const Json& d : entry["shape"].items()) {
      t.shape.push_back(d.as_int());
      count *= t.shape.back();
    }
    const std::string& dtype = entry["dtype"].as_string();
    const uint64_t begin = static_cast<uint64_t>(entry["data_offsets"][0].as_int());
    const uint64_t end = static_cast<uint64_t>(entry["data_offsets"][1].as_int());
    size_t elem = dtype == "F32" ? 4 : dtype == "F64" ? 8 : (dtype == "BF16" || dtype == "F16") ? 2 : 0;
    if (elem == 0)
      throw Error(
          path + ": tensor " + key + " has dtype " + dtype + "; adapters must be F32, F64, BF16 or F16",
          ENG_ERR_IO);
    if (end < begin || end - begin != static_cast<uint64_t>(count) * elem || data0 + end > bytes.size()) {
      throw Error(path + ": tensor " + key + " has data offsets that do not fit its shape or the file",
                  ENG_ERR_IO);
    }
    t.values.resize(static_cast<size_t>(count));
    const char* p = bytes.data() + data0 + begin;
    for (int64_t i = 0; i < count; ++i) {
      const char* q = p + static_cast<size_t>(i) * elem;
      if (dtype == "F32") {
        std::memcpy(&t.values[static_cast<size_t>(i)], q, 4);
      } else if (dtype == "F64") {
        double v;
        std::memcpy(&v, q, 8);
        t.values[static_cast<size_t>(i)] = static_cast<float>(v);
      } else {
        uint16_t h;
        std::memcpy(&h, q, 2);
        t.values[static_cast<size_t>(i)] = dtype == "BF16" ? bf16_to_float(h) : f16_to_float(h);
      }
    }
    out.emplace(key, std::move(t));
  }
  return out;
}

}  // namespace lora
