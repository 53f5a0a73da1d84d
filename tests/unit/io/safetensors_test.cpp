// engine/io/safetensors.cpp: reading files written by the Python package, and refusing every kind of
// corrupt file with a message that names the file and the tensor (plus a deterministic fuzz loop).
#include "engine/io/safetensors.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "tests/unit/io/test_files.hpp"

namespace engine::io {
namespace {

using testing::io_data_dir;
using testing::TempDir;

template <typename T>
T load_at(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Element i of a tensor as a double (every fixture value is exact in a double).
double element(const SafetensorsTensor& t, size_t i) {
  const std::byte* p = t.data + i * dtype_size(t.dtype);
  switch (t.dtype) {
    case SafetensorsDtype::F32:
      return load_at<float>(p);
    case SafetensorsDtype::F64:
      return load_at<double>(p);
    case SafetensorsDtype::F16:
      return f16_bits_to_f32(load_at<uint16_t>(p));
    case SafetensorsDtype::BF16:
      return bf16_bits_to_f32(load_at<uint16_t>(p));
    case SafetensorsDtype::I64:
      return static_cast<double>(load_at<int64_t>(p));
    case SafetensorsDtype::I32:
      return load_at<int32_t>(p);
    case SafetensorsDtype::I16:
      return load_at<int16_t>(p);
    case SafetensorsDtype::I8:
      return load_at<int8_t>(p);
    case SafetensorsDtype::U8:
      return load_at<uint8_t>(p);
    case SafetensorsDtype::BOOL:
      return load_at<uint8_t>(p);
    case SafetensorsDtype::U16:
      return load_at<uint16_t>(p);
    case SafetensorsDtype::U32:
      return load_at<uint32_t>(p);
    case SafetensorsDtype::U64:
      return static_cast<double>(load_at<uint64_t>(p));
    case SafetensorsDtype::F8_E5M2:
      return f16_bits_to_f32(static_cast<uint16_t>(load_at<uint8_t>(p) << 8));
    case SafetensorsDtype::F8_E4M3: {  // e4m3fn: 1 | 4 (bias 7) | 3, no Inf; the fixture has no NaN
      const uint8_t b = load_at<uint8_t>(p);
      const int exponent = (b >> 3) & 0xf, mantissa = b & 7;
      const double magnitude =
          exponent == 0 ? std::ldexp(mantissa, -9) : std::ldexp(8 + mantissa, exponent - 10);
      return (b & 0x80) ? -magnitude : magnitude;
    }
  }
  ADD_FAILURE() << "unexpected dtype";
  return 0;
}

TEST(SafetensorsFile, ReadsEveryDtypeWrittenByPython) {
  const SafetensorsFile file = SafetensorsFile::open(io_data_dir() / "mixed_dtypes.safetensors");
  const nlohmann::json expected =
      nlohmann::json::parse(testing::read_text(io_data_dir() / "mixed_dtypes.json"));
  ASSERT_EQ(file.size(), expected["tensors"].size());
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  size_t total_bytes = 0;
  for (const auto& [name, want] : expected["tensors"].items()) {
    SCOPED_TRACE(name);
    const auto t = file.find(name);
    ASSERT_TRUE(t.has_value());
    EXPECT_EQ(t->name, name);
    EXPECT_EQ(t->dtype_name, want["dtype"].get<std::string>());
    EXPECT_EQ(std::vector<int64_t>(t->shape.begin(), t->shape.end()),
              want["shape"].get<std::vector<int64_t>>());
    const auto values = want["values"].get<std::vector<double>>();
    ASSERT_EQ(static_cast<size_t>(t->numel()), values.size());
    EXPECT_EQ(t->nbytes, values.size() * dtype_size(t->dtype));
    for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(element(*t, i), values[i]) << "element " << i;
    total_bytes += t->nbytes;
  }
  EXPECT_EQ(total_bytes, file.data_size());
  EXPECT_EQ(file.header_size() % 8, 0u);
  // Engine dtypes where they exist.
  EXPECT_EQ(file.tensor("bf16").engine_dtype, std::optional<eng_dtype>(ENG_BF16));
  EXPECT_EQ(file.tensor("bool").engine_dtype, std::optional<eng_dtype>(ENG_BOOL));
  EXPECT_EQ(file.tensor("i16").engine_dtype, std::nullopt);
  EXPECT_EQ(file.tensor("f8_e4m3").engine_dtype, std::nullopt);
  EXPECT_EQ(file.tensor("u64").dtype, SafetensorsDtype::U64);
}

TEST(SafetensorsFile, ZeroDimensionalAndZeroSizeTensors) {
  const SafetensorsFile file = SafetensorsFile::open(io_data_dir() / "mixed_dtypes.safetensors");
  const SafetensorsTensor scalar = file.tensor("scalar");
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.nbytes, 4u);
  EXPECT_EQ(load_at<float>(scalar.data), 2.5f);
  const SafetensorsTensor empty = file.tensor("empty");
  EXPECT_EQ(std::vector<int64_t>(empty.shape.begin(), empty.shape.end()), (std::vector<int64_t>{2, 0, 3}));
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.nbytes, 0u);
}

TEST(SafetensorsFile, NamesAreInFileOrderAndMissingNamesSuggestClosest) {
  const SafetensorsFile file = SafetensorsFile::open(io_data_dir() / "mixed_dtypes.safetensors");
  const auto tensors = file.tensors();
  const auto names = file.names();
  ASSERT_EQ(tensors.size(), names.size());
  for (size_t i = 1; i < tensors.size(); ++i) {
    EXPECT_EQ(tensors[i].name, names[i]);
    EXPECT_EQ(tensors[i - 1].data + tensors[i - 1].nbytes, tensors[i].data);  // contiguous, in order
  }
  EXPECT_FALSE(file.find("model.layers.0.self_attn.q_proj.weigth").has_value());
  try {
    (void)file.tensor("model.layers.0.self_attn.q_proj.weigth");
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.status(), ENG_ERR_NOT_FOUND);
    EXPECT_NE(msg.find("mixed_dtypes.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("closest: model.layers.0.self_attn.q_proj.weight"), std::string::npos) << msg;
  }
}

TEST(SafetensorsFile, MissingFileIsAnIoError) {
  TempDir dir;
  try {
    (void)SafetensorsFile::open(dir / "nope.safetensors");
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), ENG_ERR_IO);
    EXPECT_NE(std::string(e.what()).find("nope.safetensors"), std::string::npos);
  }
}

// ---- corrupt files -----------------------------------------------------------------------------------

// A file from a header (padded with spaces to 8 bytes) and `data_bytes` bytes of data.
std::vector<std::byte> make_file(std::string header, size_t data_bytes) {
  header.append((8 - header.size() % 8) % 8, ' ');
  std::vector<std::byte> out(8 + header.size() + data_bytes, std::byte{0x11});
  const uint64_t n = header.size();
  for (size_t i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

void set_header_length(std::vector<std::byte>& bytes, uint64_t n) {
  for (size_t i = 0; i < 8; ++i) bytes[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
}

// Writes `bytes` as corrupt.safetensors, opens it, and returns the error message (fails if it opens).
std::string open_error(const std::vector<std::byte>& bytes) {
  TempDir dir;
  const auto path = dir / "corrupt.safetensors";
  testing::write_bytes(path, bytes);
  try {
    (void)SafetensorsFile::open(path);
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path.string()), std::string::npos) << "message does not name the file: " << msg;
    return msg;
  }
  ADD_FAILURE() << "a corrupt file was accepted";
  return {};
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

const char* kA = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

TEST(SafetensorsCorrupt, ValidHandMadeFileOpens) {
  // The corruptions below start from this shape of file; it must itself be valid.
  TempDir dir;
  testing::write_bytes(
      dir / "ok.safetensors",
      make_file(std::string("{") + kA + R"(,"b":{"dtype":"I8","shape":[],"data_offsets":[8,9]}})", 9));
  const SafetensorsFile f = SafetensorsFile::open(dir / "ok.safetensors");
  EXPECT_EQ(f.size(), 2u);
  EXPECT_EQ(f.tensor("b").nbytes, 1u);
}

TEST(SafetensorsCorrupt, TruncatedData) {
  auto bytes = testing::read_bytes(io_data_dir() / "mixed_dtypes.safetensors");
  bytes.pop_back();
  const std::string msg = open_error(bytes);
  EXPECT_HAS(msg, "truncated");
  // The last tensor of the file is named.
  const SafetensorsFile good = SafetensorsFile::open(io_data_dir() / "mixed_dtypes.safetensors");
  EXPECT_HAS(msg, fmt::format("'{}'", good.names().back()));
}

TEST(SafetensorsCorrupt, TruncatedInsideHeaderAndTooSmall) {
  auto bytes = testing::read_bytes(io_data_dir() / "mixed_dtypes.safetensors");
  bytes.resize(40);
  std::string msg = open_error(bytes);
  EXPECT_HAS(msg, "truncated");
  EXPECT_HAS(msg, "header length");
  bytes.resize(5);
  msg = open_error(bytes);
  EXPECT_HAS(msg, "5 bytes, too small");
  msg = open_error({});
  EXPECT_HAS(msg, "0 bytes, too small");
}

TEST(SafetensorsCorrupt, HeaderLengthLargerThanFile) {
  auto bytes = make_file(std::string("{") + kA + "}", 8);
  set_header_length(bytes, 1000);
  const std::string msg = open_error(bytes);
  EXPECT_HAS(msg, "says 1000 bytes");
  EXPECT_HAS(msg, "truncated");
}

TEST(SafetensorsCorrupt, HeaderLengthOverTheCap) {
  auto bytes = make_file(std::string("{") + kA + "}", 8);
  set_header_length(bytes, kSafetensorsMaxHeaderSize + 1);
  EXPECT_HAS(open_error(bytes), "limit of 100000000");
  set_header_length(bytes, ~uint64_t{0});
  EXPECT_HAS(open_error(bytes), "limit");
}

TEST(SafetensorsCorrupt, OverlappingOffsets) {
  const std::string msg = open_error(
      make_file(std::string("{") + kA + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12));
  EXPECT_HAS(msg, "tensor 'b' starts at data byte 4");
  EXPECT_HAS(msg, "'a' ends at byte 8");
  EXPECT_HAS(msg, "overlap");
}

TEST(SafetensorsCorrupt, GapBetweenTensors) {
  const std::string msg = open_error(
      make_file(std::string("{") + kA + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", 20));
  EXPECT_HAS(msg, "tensor 'b' starts at data byte 12");
  EXPECT_HAS(msg, "4 bytes in between");
}

TEST(SafetensorsCorrupt, FirstTensorNotAtZero) {
  const std::string msg =
      open_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12));
  EXPECT_HAS(msg, "tensor 'a' starts at data byte 4");
  EXPECT_HAS(msg, "starts at byte 0");
}

TEST(SafetensorsCorrupt, TrailingBytes) {
  const std::string msg = open_error(make_file(std::string("{") + kA + "}", 11));
  EXPECT_HAS(msg, "last tensor 'a' ends at data byte 8");
  EXPECT_HAS(msg, "3 trailing bytes");
  EXPECT_HAS(open_error(make_file("{}", 2)), "2 trailing bytes");
}

TEST(SafetensorsCorrupt, BadJson) {
  std::string msg = open_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8));
  EXPECT_HAS(msg, "not valid JSON");
  msg = open_error(make_file(std::string(" {") + kA + "}", 8));
  EXPECT_HAS(msg, "does not start with '{'");
  msg = open_error(make_file("", 0));
  EXPECT_HAS(msg, "does not start with '{'");
}

TEST(SafetensorsCorrupt, InvalidUtf8) {
  EXPECT_HAS(open_error(make_file("{\"\xc3\x28\":{}}", 0)), "not valid UTF-8 (bad byte at header offset 2)");
  EXPECT_HAS(open_error(make_file("{\"\xed\xa0\x80\":{}}", 0)), "UTF-8");  // a surrogate
}

TEST(SafetensorsCorrupt, BadDtype) {
  const std::string msg =
      open_error(make_file(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8));
  EXPECT_HAS(msg, "tensor 'a' has unknown dtype \"F33\"");
  EXPECT_HAS(msg, "BF16");  // the list of supported ones
  EXPECT_HAS(open_error(make_file(R"({"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", 8)),
             "\"f32\"");
  EXPECT_HAS(open_error(make_file(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8)),
             "must be a string");
}

TEST(SafetensorsCorrupt, NegativeOrNonIntegerShape) {
  std::string msg = open_error(make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8));
  EXPECT_HAS(msg, "tensor 'a' has shape entry -2");
  EXPECT_HAS(msg, "non-negative");
  EXPECT_HAS(open_error(make_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8)), "'a'");
  EXPECT_HAS(open_error(make_file(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8)), "'a'");
}

TEST(SafetensorsCorrupt, ShapeDoesNotMatchBytes) {
  const std::string msg =
      open_error(make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8));
  EXPECT_HAS(msg, "tensor 'a' (F32 with shape [3]) needs 12 bytes");
  EXPECT_HAS(msg, "span 8 bytes");
}

TEST(SafetensorsCorrupt, ShapeProductOverflows) {
  const std::string msg = open_error(
      make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8));
  EXPECT_HAS(msg, "tensor 'a'");
  EXPECT_HAS(msg, "overflows");
}

TEST(SafetensorsCorrupt, OffsetsMalformed) {
  EXPECT_HAS(open_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)),
             "tensor 'a' starts at data byte 8");
  EXPECT_HAS(open_error(make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                                  R"("b":{"dtype":"F32","shape":[0],"data_offsets":[0,-1]}})",
                                  0)),
             "tensor 'b' has \"data_offsets\" [0,-1]");
  EXPECT_HAS(open_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8)),
             "tensor 'a' has \"data_offsets\" [0]");
  EXPECT_HAS(open_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", 8)),
             "[0,8,8]");
}

TEST(SafetensorsCorrupt, EndBeforeBegin) {
  // "b" starts where "a" ends, as it should, but ends before it begins.
  const std::string msg = open_error(
      make_file(std::string("{") + kA + R"(,"b":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}})", 8));
  EXPECT_HAS(msg, "tensor 'b' has data_offsets [8, 4], which end before they begin");
}

TEST(SafetensorsCorrupt, UnknownMissingAndDuplicateKeys) {
  EXPECT_HAS(open_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8)),
             "tensor 'a' has an unknown field 'x'");
  EXPECT_HAS(open_error(make_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8)),
             "tensor 'a' has no \"shape\" field");
  EXPECT_HAS(open_error(make_file(std::string("{") + kA + "," + kA + "}", 8)), "key 'a' twice");
  EXPECT_HAS(
      open_error(make_file(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8)),
      "key 'dtype' twice");
  EXPECT_HAS(open_error(make_file(R"({"a":[1,2]})", 0)), "tensor 'a' is described by a JSON array");
}

TEST(SafetensorsFile, NullMetadataMeansNone) {
  const SafetensorsFile f = SafetensorsFile::from_bytes(
      make_file(std::string(R"({"__metadata__":null,)") + kA + "}", 8), "null.safetensors");
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_EQ(f.size(), 1u);
}

TEST(SafetensorsCorrupt, LongValuesAreCutInMessages) {
  const std::string msg = open_error(make_file(
      R"({"a":{"dtype":"F32","shape":[")" + std::string(5000, 'x') + R"("],"data_offsets":[0,8]}})", 8));
  EXPECT_HAS(msg, "xxx...");
  EXPECT_LT(msg.size(), 600u);
  const std::string name(1000, 'n');
  const std::string named =
      open_error(make_file("{\"" + name + R"(":{"dtype":"X","shape":[],"data_offsets":[0,0]}})", 0));
  EXPECT_HAS(named, "nnn...' (1000 bytes)");
  EXPECT_LT(named.size(), 800u);
}

TEST(SafetensorsCorrupt, BadMetadata) {
  EXPECT_HAS(open_error(make_file(std::string(R"({"__metadata__":{"k":1},)") + kA + "}", 8)),
             "\"__metadata__\" entry 'k' is a JSON number");
  EXPECT_HAS(open_error(make_file(std::string(R"({"__metadata__":"x",)") + kA + "}", 8)), "__metadata__");
}

// Random mutations of a good file must give either a valid file or an engine::Error, never a crash or
// another exception; an accepted file must still satisfy the invariants the validation promises.
TEST(SafetensorsFuzz, MutatedAndTruncatedBytesNeverCrash) {
  const auto good = testing::read_bytes(io_data_dir() / "mixed_dtypes.safetensors");
  const size_t header_end =
      8 + SafetensorsFile::open(io_data_dir() / "mixed_dtypes.safetensors").header_size();
  std::mt19937_64 rng(20261123);
  const std::string json_chars = "{}[],:\"0123456789-.e \\u";
  size_t accepted = 0, rejected = 0;
  for (int iteration = 0; iteration < 4000; ++iteration) {
    std::vector<std::byte> bytes = good;
    const int kind = static_cast<int>(rng() % 6);
    auto pick = [&](size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); };
    switch (kind) {
      case 0:  // flip random bits anywhere
        for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k)
          bytes[pick(bytes.size())] ^= std::byte(1u << (rng() % 8));
        break;
      case 1:  // a JSON-ish character somewhere in the header
        bytes[8 + pick(header_end - 8)] = static_cast<std::byte>(json_chars[pick(json_chars.size())]);
        break;
      case 2:  // truncate
        bytes.resize(pick(bytes.size()));
        break;
      case 3:  // insert or delete a byte in the header
        if (rng() % 2) {
          bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(8 + pick(header_end - 8)),
                       static_cast<std::byte>(json_chars[pick(json_chars.size())]));
        } else {
          bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(8 + pick(header_end - 8)));
        }
        break;
      case 4:  // random header length
        set_header_length(bytes, rng() % 2 ? rng() : rng() % (bytes.size() + 16));
        break;
      default:  // change one digit of the header (offsets and shapes)
        for (size_t tries = 0; tries < 64; ++tries) {
          const size_t at = 8 + pick(header_end - 8);
          const char c = static_cast<char>(bytes[at]);
          if (c >= '0' && c <= '9') {
            bytes[at] = static_cast<std::byte>('0' + rng() % 10);
            break;
          }
        }
    }
    try {
      const SafetensorsFile f = SafetensorsFile::from_bytes(bytes, "fuzz.safetensors");
      ++accepted;
      size_t total = 0;
      for (const SafetensorsTensor& t : f.tensors()) {
        ASSERT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * dtype_size(t.dtype));
        total += t.nbytes;
      }
      // The tensors tile the data buffer: no gap, no overlap, nothing after the last one.
      ASSERT_EQ(total, f.data_size());
      const auto all = f.tensors();
      for (size_t i = 1; i < all.size(); ++i) ASSERT_EQ(all[i - 1].data + all[i - 1].nbytes, all[i].data);
      if (!all.empty()) {
        ASSERT_EQ(static_cast<size_t>(all.back().data + all.back().nbytes - all.front().data), total);
      }
    } catch (const Error& e) {
      ++rejected;
      ASSERT_NE(std::string(e.what()).find("fuzz.safetensors"), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iteration << ": not an engine::Error: " << e.what();
    }
  }
  // Both outcomes happen, so the loop exercises the checks rather than one early exit.
  EXPECT_GT(accepted, 50u);
  EXPECT_GT(rejected, 1000u);
}

}  // namespace
}  // namespace engine::io
