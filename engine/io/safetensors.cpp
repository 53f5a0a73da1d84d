#include "engine/io/safetensors.hpp"

#include <spdlog/fmt/fmt.h>
#include <spdlog/fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <utility>

#include "engine/core/error.hpp"
#include "engine/core/utf8.hpp"
#include "engine/io/closest_names.hpp"
#include "engine/io/mapped_file.hpp"

namespace engine::io {
namespace {

struct Entry {
  std::string name;
  SafetensorsDtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // data_offsets, relative to the start of the data buffer
  uint64_t end = 0;
};

// A name for an error message, quoted and cut to 200 bytes (at a UTF-8 boundary): corrupt headers can hold
// names of any length.
std::string in_quotes(std::string_view s) {
  if (s.size() <= 200) return fmt::format("'{}'", s);
  size_t cut = 200;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;
  return fmt::format("'{}...' ({} bytes)", s.substr(0, cut), s.size());
}

std::string shape_string(const std::vector<int64_t>& shape) {
  if (shape.size() <= 16) return fmt::format("[{}]", fmt::join(shape, ", "));
  return fmt::format("[{}, ... ({} dimensions)]", fmt::join(shape.begin(), shape.begin() + 8, ", "),
                     shape.size());
}

// A JSON value for an error message, cut short: a corrupt header can hold megabytes in one value.
std::string short_dump(const nlohmann::json& value) {
  std::string text = value.dump();
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

// Parses the header JSON, refusing duplicate keys in any object (nlohmann would keep the last silently).
nlohmann::json parse_header_json(std::string_view text, const std::string& path) {
  std::vector<std::set<std::string>> open_objects;  // keys seen so far in each enclosing object
  std::optional<std::string> duplicate;
  auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      open_objects.emplace_back();
    } else if (event == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == E::key && !open_objects.empty() && !duplicate) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) duplicate = key;
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::exception& e) {
    fail(
        "{}: the safetensors header is not valid JSON ({}); the file is corrupt or was not written by a "
        "safetensors writer",
        path, e.what());
  }
  if (duplicate) {
    fail(
        "{}: the safetensors header has the key {} twice; each tensor (and each field of a tensor) must "
        "appear once",
        path, in_quotes(*duplicate));
  }
  return header;
}

// A non-negative JSON integer as uint64, or nullopt.
std::optional<uint64_t> as_unsigned(const nlohmann::json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& value) {
  if (!value.is_object()) {
    fail(
        "{}: tensor {} is described by a JSON {}, expected an object with \"dtype\", \"shape\" and "
        "\"data_offsets\"",
        path, in_quotes(name), value.type_name());
  }
  for (const auto& [key, _] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      fail("{}: tensor {} has an unknown field {} (allowed: \"dtype\", \"shape\", \"data_offsets\")", path,
           in_quotes(name), in_quotes(key));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) fail("{}: tensor {} has no \"{}\" field", path, in_quotes(name), key);
  }
  Entry entry;
  entry.name = name;

  const nlohmann::json& dtype = value["dtype"];
  if (!dtype.is_string()) fail("{}: tensor {}: \"dtype\" must be a string", path, in_quotes(name));
  const auto parsed_dtype = parse_dtype(dtype.get_ref<const std::string&>());
  if (!parsed_dtype) {
    fail("{}: tensor {} has unknown dtype \"{}\" (supported: {})", path, in_quotes(name),
         dtype.get_ref<const std::string&>(), dtype_names_list());
  }
  entry.dtype = *parsed_dtype;

  const nlohmann::json& shape = value["shape"];
  if (!shape.is_array()) fail("{}: tensor {}: \"shape\" must be an array of integers", path, in_quotes(name));
  for (const nlohmann::json& dim : shape) {
    const auto d = as_unsigned(dim);
    if (!d) {
      fail("{}: tensor {} has shape entry {}; every dimension must be a non-negative integer", path,
           in_quotes(name), short_dump(dim));
    }
    if (*d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail("{}: tensor {} has dimension {}, too large", path, in_quotes(name), *d);
    }
    entry.shape.push_back(static_cast<int64_t>(*d));
  }

  const nlohmann::json& offsets = value["data_offsets"];
  std::optional<uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) {
    begin = as_unsigned(offsets[0]);
    end = as_unsigned(offsets[1]);
  }
  if (!begin || !end) {
    fail("{}: tensor {} has \"data_offsets\" {}; expected [begin, end], two non-negative integers", path,
         in_quotes(name), short_dump(offsets));
  }
  entry.begin = *begin;
  entry.end = *end;
  return entry;
}

// product(shape) * dtype size, or nullopt on overflow.
std::optional<uint64_t> byte_count(const Entry& e) {
  uint64_t n = dtype_size(e.dtype);
  for (int64_t d : e.shape) {
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  return n;
}

}  // namespace

struct SafetensorsFile::State {
  std::string path;
  MappedFile mapped;
  std::vector<std::byte> owned;
  std::span<const std::byte> bytes;  // the whole file
  size_t header_size = 0;
  std::vector<Entry> entries;                            // sorted by data offsets
  std::unordered_map<std::string_view, size_t> by_name;  // views into entries[i].name
  std::map<std::string, std::string> metadata;

  void parse();
  SafetensorsTensor view(const Entry& e) const;
};

void SafetensorsFile::State::parse() {
  const size_t size = bytes.size();
  if (size < 8) {
    fail(
        "{}: file is {} bytes, too small for a safetensors file (it starts with an 8-byte header length); "
        "the file is truncated or not a safetensors file: re-download or re-save it",
        path, size);
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  if (n > kSafetensorsMaxHeaderSize) {
    fail(
        "{}: header length field says {} bytes, more than the safetensors limit of {} bytes; the file is "
        "corrupt or not a safetensors file",
        path, n, kSafetensorsMaxHeaderSize);
  }
  if (n > size - 8) {
    fail(
        "{}: header length field says {} bytes but only {} bytes follow it; the file is truncated: "
        "re-download or re-save it",
        path, n, size - 8);
  }
  header_size = static_cast<size_t>(n);
  const std::span<const std::byte> header_bytes = bytes.subspan(8, header_size);
  const std::string_view text(reinterpret_cast<const char*>(header_bytes.data()), header_size);
  const size_t utf8_ok = first_invalid_utf8(text);
  if (utf8_ok != header_size) {
    fail("{}: the safetensors header is not valid UTF-8 (bad byte at header offset {}); the file is corrupt",
         path, utf8_ok);
  }
  if (text.empty() || text.front() != '{') {
    fail(
        "{}: the safetensors header does not start with '{{' (a JSON object); the file is corrupt or not a "
        "safetensors file",
        path);
  }
  const nlohmann::json header = parse_header_json(text, path);
  if (!header.is_object()) fail("{}: the safetensors header is not a JSON object", path);

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;  // the reference reads null as "no metadata"
      if (!value.is_object()) {
        fail("{}: \"__metadata__\" must be an object of string values, found a JSON {}", path,
             value.type_name());
      }
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) {
          fail("{}: \"__metadata__\" entry {} is a JSON {}; metadata values must be strings", path,
               in_quotes(mkey), mvalue.type_name());
        }
        metadata.emplace(mkey, mvalue.get<std::string>());
      }
      continue;
    }
    entries.push_back(parse_entry(path, key, value));
  }

  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
  });
  uint64_t expected_begin = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    if (e.begin != expected_begin) {
      const std::string before = previous ? fmt::format("the previous tensor {} ends at byte {}",
                                                        in_quotes(previous->name), expected_begin)
                                          : std::string("the data buffer starts at byte 0");
      if (e.begin > expected_begin) {
        fail(
            "{}: tensor {} starts at data byte {} but {}: {} bytes in between belong to no tensor (the "
            "offsets must tile the data buffer without gaps)",
            path, in_quotes(e.name), e.begin, before, e.begin - expected_begin);
      }
      fail("{}: tensor {} starts at data byte {} but {}: the tensors overlap", path, in_quotes(e.name),
           e.begin, before);
    }
    if (e.end < e.begin) {
      fail("{}: tensor {} has data_offsets [{}, {}], which end before they begin", path, in_quotes(e.name),
           e.begin, e.end);
    }
    const auto nbytes = byte_count(e);
    if (!nbytes) {
      fail("{}: tensor {} has shape {} whose size in bytes overflows 64 bits; the header is corrupt", path,
           in_quotes(e.name), shape_string(e.shape));
    }
    if (*nbytes != e.end - e.begin) {
      fail(
          "{}: tensor {} ({} with shape {}) needs {} bytes but its data_offsets [{}, {}] span {} bytes; the "
          "header does not match the data",
          path, in_quotes(e.name), dtype_name(e.dtype), shape_string(e.shape), *nbytes, e.begin, e.end,
          e.end - e.begin);
    }
    expected_begin = e.end;
    previous = &e;
  }
  const uint64_t data_size = size - 8 - header_size;
  if (expected_begin != data_size) {
    if (expected_begin > data_size) {
      fail(
          "{}: tensor {} ends at data byte {} but the file holds only {} data bytes; the file is truncated: "
          "re-download or re-save it",
          path, in_quotes(previous->name), expected_begin, data_size);
    }
    const std::string last = previous ? fmt::format("the last tensor {} ends", in_quotes(previous->name))
                                      : std::string("there are no tensors, so the data ends");
    fail(
        "{}: {} at data byte {} but the file has {} data bytes: {} trailing bytes belong to no tensor (the "
        "file was appended to or its header is wrong)",
        path, last, expected_begin, data_size, data_size - expected_begin);
  }
  for (size_t i = 0; i < entries.size(); ++i) by_name.emplace(entries[i].name, i);
}

SafetensorsTensor SafetensorsFile::State::view(const Entry& e) const {
  const std::byte* data = bytes.data() + 8 + header_size + e.begin;
  return SafetensorsTensor{e.name,
                           e.dtype,
                           dtype_name(e.dtype),
                           to_eng_dtype(e.dtype),
                           std::span<const int64_t>(e.shape),
                           data,
                           static_cast<size_t>(e.end - e.begin)};
}

int64_t SafetensorsTensor::numel() const noexcept {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<State> state) : state_(std::move(state)) {}
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  auto state = std::make_unique<State>();
  state->path = path.string();
  state->mapped = MappedFile::open(path);
  state->bytes = state->mapped.bytes();
  state->parse();
  return SafetensorsFile(std::move(state));
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<std::byte> bytes, std::string label) {
  auto state = std::make_unique<State>();
  state->path = std::move(label);
  state->owned = std::move(bytes);
  state->bytes = state->owned;
  state->parse();
  return SafetensorsFile(std::move(state));
}

const std::string& SafetensorsFile::path() const noexcept { return state_->path; }

std::vector<std::string_view> SafetensorsFile::names() const {
  std::vector<std::string_view> out;
  out.reserve(state_->entries.size());
  for (const Entry& e : state_->entries) out.emplace_back(e.name);
  return out;
}

size_t SafetensorsFile::size() const noexcept { return state_->entries.size(); }

std::optional<SafetensorsTensor> SafetensorsFile::find(std::string_view name) const {
  const auto it = state_->by_name.find(name);
  if (it == state_->by_name.end()) return std::nullopt;
  return state_->view(state_->entries[it->second]);
}

SafetensorsTensor SafetensorsFile::tensor(std::string_view name) const {
  if (auto t = find(name)) return *t;
  const std::vector<std::string_view> close = closest_names(name, names(), 3);
  fail_with(ENG_ERR_NOT_FOUND, "{}: no tensor named {} ({} tensors in the file{}{})", state_->path,
            in_quotes(name), state_->entries.size(),
            close.empty() ? "" : "; closest: ", fmt::join(close, ", "));
}

std::vector<SafetensorsTensor> SafetensorsFile::tensors() const {
  std::vector<SafetensorsTensor> out;
  out.reserve(state_->entries.size());
  for (const Entry& e : state_->entries) out.push_back(state_->view(e));
  return out;
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const noexcept {
  return state_->metadata;
}

size_t SafetensorsFile::header_size() const noexcept { return state_->header_size; }

size_t SafetensorsFile::data_size() const noexcept { return state_->bytes.size() - 8 - state_->header_size; }

}  // namespace engine::io
