#include "engine/io/safetensors_writer.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <string_view>

#include "engine/core/error.hpp"
#include "engine/core/utf8.hpp"
#include "engine/io/atomic_file.hpp"

namespace engine::io {
namespace {

// A JSON string as serde_json writes it: '"' and '\' escaped, control characters as \b \t \n \f \r or
// \u00XX (lowercase hex), everything else (non-ASCII UTF-8 included) verbatim.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

}  // namespace

void SafetensorsWriter::add(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape,
                            std::span<const std::byte> data) {
  Pending p;
  p.name = std::move(name);
  p.dtype = dtype;
  p.shape = std::move(shape);
  p.owned.assign(data.begin(), data.end());
  p.data = p.owned;
  add_pending(std::move(p));
}

void SafetensorsWriter::add(std::string name, eng_dtype dtype, std::vector<int64_t> shape,
                            std::span<const std::byte> data) {
  add(std::move(name), from_eng_dtype(dtype), std::move(shape), data);
}

void SafetensorsWriter::add_borrowed(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape,
                                     std::span<const std::byte> data) {
  Pending p;
  p.name = std::move(name);
  p.dtype = dtype;
  p.shape = std::move(shape);
  p.data = data;
  add_pending(std::move(p));
}

void SafetensorsWriter::add_streamed(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape) {
  Pending p;
  p.name = std::move(name);
  p.dtype = dtype;
  p.shape = std::move(shape);
  p.streamed = true;
  add_pending(std::move(p));
}

void SafetensorsWriter::add_pending(Pending p) {
  if (p.name == "__metadata__") fail("cannot add a tensor named \"__metadata__\": the name is reserved");
  if (!is_valid_utf8(p.name)) fail("cannot add tensor '{}': its name is not valid UTF-8", p.name);
  for (const Pending& other : tensors_) {
    if (other.name == p.name) fail("cannot add tensor '{}' twice to one safetensors file", p.name);
  }
  uint64_t n = dtype_size(p.dtype);
  for (const int64_t d : p.shape) {
    if (d < 0) fail("cannot add tensor '{}': dimension {} is negative", p.name, d);
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) {
      fail("cannot add tensor '{}': its size in bytes overflows 64 bits", p.name);
    }
  }
  if (!p.streamed && n != p.data.size()) {
    fail("cannot add tensor '{}': {} elements of {} need {} bytes, but {} bytes were given", p.name,
         n / dtype_size(p.dtype), dtype_name(p.dtype), n, p.data.size());
  }
  p.nbytes = n;
  // The span of an owned vector stays valid when the Pending moves: a vector's move keeps its buffer.
  tensors_.push_back(std::move(p));
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  if (!is_valid_utf8(key) || !is_valid_utf8(value)) {
    fail("cannot set safetensors metadata '{}': keys and values must be valid UTF-8", key);
  }
  metadata_[std::move(key)] = std::move(value);
}

std::vector<const SafetensorsWriter::Pending*> SafetensorsWriter::ordered() const {
  std::vector<const Pending*> order;
  for (const Pending& p : tensors_) order.push_back(&p);
  std::sort(order.begin(), order.end(), [](const Pending* a, const Pending* b) {
    if (a->dtype != b->dtype) return a->dtype > b->dtype;  // descending dtype, as the reference sorts
    return a->name < b->name;                              // then bytewise by name
  });
  return order;
}

std::string SafetensorsWriter::header() const {
  std::string out = "{";
  bool first = true;
  if (!metadata_.empty()) {
    out += "\"__metadata__\":{";
    bool first_entry = true;
    for (const auto& [key, value] : metadata_) {
      if (!first_entry) out.push_back(',');
      first_entry = false;
      append_json_string(out, key);
      out.push_back(':');
      append_json_string(out, value);
    }
    out.push_back('}');
    first = false;
  }
  uint64_t offset = 0;
  for (const Pending* p : ordered()) {
    if (!first) out.push_back(',');
    first = false;
    append_json_string(out, p->name);
    out += ":{\"dtype\":";
    append_json_string(out, dtype_name(p->dtype));
    out += ",\"shape\":[";
    for (size_t i = 0; i < p->shape.size(); ++i) {
      if (i > 0) out.push_back(',');
      out += std::to_string(p->shape[i]);
    }
    const uint64_t end = offset + p->nbytes;
    out += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  out.push_back('}');
  out.append((8 - out.size() % 8) % 8, ' ');  // pad to a multiple of 8, like the reference
  return out;
}

namespace {
std::array<std::byte, 8> little_endian_u64(uint64_t n) {
  std::array<std::byte, 8> out{};
  for (size_t i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  return out;
}
}  // namespace

std::vector<std::string> SafetensorsWriter::file_order() const {
  std::vector<std::string> names;
  for (const Pending* p : ordered()) names.push_back(p->name);
  return names;
}

std::vector<std::byte> SafetensorsWriter::serialize() const {
  for (const Pending& p : tensors_) {
    if (p.streamed)
      fail("cannot serialize tensor '{}' in memory: its bytes are streamed (use write)", p.name);
  }
  const std::string head = header();
  const auto order = ordered();
  size_t total = 8 + head.size();
  for (const Pending* p : order) total += p->data.size();
  std::vector<std::byte> out;
  out.reserve(total);
  const auto n = little_endian_u64(head.size());
  out.insert(out.end(), n.begin(), n.end());
  const auto* h = reinterpret_cast<const std::byte*>(head.data());
  out.insert(out.end(), h, h + head.size());
  for (const Pending* p : order) out.insert(out.end(), p->data.begin(), p->data.end());
  return out;
}

void SafetensorsWriter::write(const std::filesystem::path& path) const {
  write(path, [](const std::string& name, const ByteSink&) {
    fail("cannot write tensor '{}': its bytes are streamed; pass a producer to write()", name);
  });
}

void SafetensorsWriter::write(
    const std::filesystem::path& path,
    const std::function<void(const std::string& name, const ByteSink& sink)>& produce) const {
  const std::string head = header();
  AtomicFileWriter file(path);  // removed again unless commit() is reached
  const auto n = little_endian_u64(head.size());
  file.write(std::span<const std::byte>(n));
  file.write(std::string_view(head));
  for (const Pending* p : ordered()) {
    if (!p->streamed) {
      file.write(p->data);
      continue;
    }
    uint64_t written = 0;
    produce(p->name, [&](std::span<const std::byte> bytes) {
      if (bytes.size() > p->nbytes - written) {
        fail("tensor '{}' of {}: the producer gave more than its {} bytes", p->name, path.string(),
             p->nbytes);
      }
      file.write(bytes);
      written += bytes.size();
    });
    if (written != p->nbytes) {
      fail("tensor '{}' of {}: the producer gave {} of its {} bytes", p->name, path.string(), written,
           p->nbytes);
    }
  }
  file.commit();
}

}  // namespace engine::io
