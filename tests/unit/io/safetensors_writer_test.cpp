// engine/io/safetensors_writer.cpp: the bytes must equal what the Python safetensors package writes for the
// same tensors (fixtures from scripts/fixtures/make_io_fixtures.py), and read back unchanged.
#include "engine/io/safetensors_writer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/io/safetensors.hpp"
#include "tests/unit/io/test_files.hpp"

namespace engine::io {
namespace {

using testing::io_data_dir;
using testing::TempDir;

template <typename T>
std::vector<std::byte> as_bytes(const std::vector<T>& values) {
  std::vector<std::byte> out(values.size() * sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// Element i of each tensor, the formulas of writer_expected() in make_io_fixtures.py.
SafetensorsWriter formula_tensors() {
  SafetensorsWriter w;
  // Added in an order unlike the file's, so the writer's own ordering is what the test checks.
  std::vector<float> z(6);
  for (size_t i = 0; i < z.size(); ++i) z[i] = static_cast<float>(i) * 0.25f - 1.0f;
  w.add("z.float", SafetensorsDtype::F32, {2, 3}, as_bytes(z));  // (2, 3) f32
  std::vector<uint8_t> weird = {1, 2};
  w.add("w\"e\\ird/\xc3\xa9\n", SafetensorsDtype::U8, {2}, as_bytes(weird));
  std::vector<uint16_t> half(3);
  for (size_t i = 0; i < half.size(); ++i) half[i] = f32_to_f16_bits(static_cast<float>(i) * 0.5f);
  w.add("a.half", SafetensorsDtype::F16, {3}, as_bytes(half));
  std::vector<uint16_t> bf(4);
  for (size_t i = 0; i < bf.size(); ++i) bf[i] = f32_to_bf16_bits(static_cast<float>(i) - 1.5f);
  w.add("m.bf16", ENG_BF16, {2, 2}, as_bytes(bf));  // through the eng_dtype overload
  std::vector<int64_t> i64(4);
  for (size_t i = 0; i < i64.size(); ++i) i64[i] = static_cast<int64_t>(i) * 1000 - 7;
  w.add("b.i64", SafetensorsDtype::I64, {4}, as_bytes(i64));
  std::vector<int8_t> i8(5);
  for (size_t i = 0; i < i8.size(); ++i) i8[i] = static_cast<int8_t>(static_cast<int>(i) - 2);
  w.add("c.i8", SafetensorsDtype::I8, {5}, as_bytes(i8));
  std::vector<uint8_t> flags = {0, 1, 0};
  w.add("d.bool", SafetensorsDtype::BOOL, {3}, as_bytes(flags));
  std::vector<double> scalar = {3.5};
  w.add("scalar", SafetensorsDtype::F64, {}, as_bytes(scalar));  // 0-d
  w.add("empty", SafetensorsDtype::F32, {2, 0}, {});             // zero-size
  w.set_metadata("format", "pt");
  return w;
}

TEST(SafetensorsWriter, BytesEqualPythonForTheSameTensors) {
  const SafetensorsWriter w = formula_tensors();
  const auto expected = testing::read_bytes(io_data_dir() / "writer_expected.safetensors");
  const auto got = w.serialize();
  ASSERT_EQ(got.size(), expected.size()) << "header we wrote: " << w.header();
  EXPECT_TRUE(got == expected) << "header we wrote: " << w.header();
}

// Re-serialising what the reader returns (tensors added in reverse file order) reproduces Python's bytes.
void expect_rewrite_identical(const std::filesystem::path& path) {
  SCOPED_TRACE(path.string());
  const SafetensorsFile file = SafetensorsFile::open(path);
  SafetensorsWriter w;
  auto tensors = file.tensors();
  for (auto it = tensors.rbegin(); it != tensors.rend(); ++it) {
    w.add_borrowed(std::string(it->name), it->dtype, std::vector<int64_t>(it->shape.begin(), it->shape.end()),
                   std::span<const std::byte>(it->data, it->nbytes));
  }
  for (const auto& [k, v] : file.metadata()) w.set_metadata(k, v);
  EXPECT_TRUE(w.serialize() == testing::read_bytes(path)) << "header we wrote: " << w.header();
}

TEST(SafetensorsWriter, RewritingPythonFilesIsByteIdentical) {
  expect_rewrite_identical(io_data_dir() / "mixed_dtypes.safetensors");
  expect_rewrite_identical(io_data_dir() / "sharded" / "model-00001-of-00002.safetensors");
  expect_rewrite_identical(io_data_dir() / "sharded" / "model-00002-of-00002.safetensors");
  for (int k = 1; k <= 8; ++k) {  // headers of every length mod 8 (padding)
    expect_rewrite_identical(io_data_dir() / "pad" / ("pad_" + std::to_string(k) + ".safetensors"));
  }
}

TEST(SafetensorsWriter, HeaderIsPaddedWithSpacesToEightBytes) {
  for (int k = 1; k <= 8; ++k) {
    SafetensorsWriter w;
    std::vector<float> one = {1.0f};
    w.add(std::string(static_cast<size_t>(k), 'x'), SafetensorsDtype::F32, {1}, as_bytes(one));
    const std::string header = w.header();
    EXPECT_EQ(header.size() % 8, 0u);
    const size_t json_end = header.rfind('}') + 1;
    EXPECT_LT(header.size() - json_end, 8u);
    EXPECT_EQ(header.find_first_not_of(' ', json_end), std::string::npos);
  }
  EXPECT_EQ(SafetensorsWriter().header(), "{}      ");
}

TEST(SafetensorsWriter, WriteThenReadRoundTrip) {
  TempDir dir;
  SafetensorsWriter w = formula_tensors();
  w.set_metadata("zeta", "last");
  w.set_metadata("alpha", "\x01 control \"quoted\"");
  const auto path = dir / "out.safetensors";
  w.write(path);
  EXPECT_EQ(testing::file_names(dir.path()), std::vector<std::string>{"out.safetensors"});  // no temp left
  EXPECT_TRUE(testing::read_bytes(path) == w.serialize());

  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.size(), 9u);
  EXPECT_EQ(f.metadata().at("alpha"), "\x01 control \"quoted\"");
  EXPECT_EQ(f.metadata().at("zeta"), "last");
  const SafetensorsTensor z = f.tensor("z.float");
  EXPECT_EQ(std::vector<int64_t>(z.shape.begin(), z.shape.end()), (std::vector<int64_t>{2, 3}));
  std::vector<float> values(6);
  std::memcpy(values.data(), z.data, z.nbytes);
  EXPECT_EQ(values, (std::vector<float>{-1.0f, -0.75f, -0.5f, -0.25f, 0.0f, 0.25f}));
  const SafetensorsTensor weird = f.tensor("w\"e\\ird/\xc3\xa9\n");
  EXPECT_EQ(weird.nbytes, 2u);
  EXPECT_EQ(static_cast<int>(weird.data[1]), 2);
  // Writing again replaces the file atomically.
  SafetensorsWriter small;
  small.add("only", SafetensorsDtype::U8, {0}, {});
  small.write(path);
  EXPECT_EQ(SafetensorsFile::open(path).size(), 1u);
}

// Streamed tensors: the producer's bytes, asked for in file order and given in pieces, make the same file as
// the same tensors held in memory; a producer that gives too few or too many bytes leaves no file.
TEST(SafetensorsWriter, StreamedTensorsWriteTheSameBytesAsHeldOnes) {
  TempDir dir;
  const SafetensorsWriter held = formula_tensors();
  const SafetensorsFile reference = SafetensorsFile::from_bytes(held.serialize(), "held");
  SafetensorsWriter streamed;
  streamed.set_metadata("format", "pt");
  for (const SafetensorsTensor& t : reference.tensors()) {
    const std::vector<int64_t> shape(t.shape.begin(), t.shape.end());
    if (t.name == "c.i8") {  // one held tensor among the streamed ones
      streamed.add(std::string(t.name), t.dtype, shape, std::span<const std::byte>(t.data, t.nbytes));
    } else {
      streamed.add_streamed(std::string(t.name), t.dtype, shape);
    }
  }
  EXPECT_EQ(streamed.header(), held.header());
  EXPECT_THROW(streamed.serialize(), Error);
  EXPECT_THROW(streamed.write(dir / "x.safetensors"), Error) << "streamed tensors need a producer";
  std::vector<std::string> asked;
  streamed.write(dir / "s.safetensors",
                 [&](const std::string& name, const SafetensorsWriter::ByteSink& sink) {
                   asked.push_back(name);
                   const SafetensorsTensor t = reference.tensor(name);
                   for (size_t at = 0; at < t.nbytes; at += 3)  // in 3-byte pieces
                     sink(std::span<const std::byte>(t.data + at, std::min<size_t>(3, t.nbytes - at)));
                 });
  EXPECT_TRUE(testing::read_bytes(dir / "s.safetensors") == held.serialize());
  std::vector<std::string> order = held.file_order();
  order.erase(std::find(order.begin(), order.end(), "c.i8"));
  EXPECT_EQ(asked, order) << "asked in file order, held tensors not asked";

  for (const bool longer : {false, true}) {
    auto short_or_long = [&](const std::string& name, const SafetensorsWriter::ByteSink& sink) {
      const SafetensorsTensor t = reference.tensor(name);
      std::vector<std::byte> bytes(t.data, t.data + t.nbytes);
      if (name == "z.float") {
        if (longer)
          bytes.push_back(std::byte{0});
        else
          bytes.pop_back();
      }
      sink(bytes);
    };
    EXPECT_THROW(streamed.write(dir / "bad.safetensors", short_or_long), Error) << longer;
  }
  EXPECT_EQ(testing::file_names(dir.path()), std::vector<std::string>{"s.safetensors"})
      << "nothing else left";
}

TEST(SafetensorsWriter, RejectsInvalidTensors) {
  SafetensorsWriter w;
  std::vector<float> two = {1.0f, 2.0f};
  w.add("a", SafetensorsDtype::F32, {2}, as_bytes(two));
  auto message = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(message([&] { w.add("a", SafetensorsDtype::F32, {2}, as_bytes(two)); }).find("'a' twice"),
            std::string::npos);
  EXPECT_NE(
      message([&] { w.add("b", SafetensorsDtype::F32, {3}, as_bytes(two)); }).find("need 12 bytes, but 8"),
      std::string::npos);
  EXPECT_NE(message([&] { w.add("c", SafetensorsDtype::F32, {-2}, as_bytes(two)); }).find("negative"),
            std::string::npos);
  EXPECT_NE(
      message([&] { w.add("__metadata__", SafetensorsDtype::F32, {2}, as_bytes(two)); }).find("reserved"),
      std::string::npos);
  EXPECT_NE(message([&] { w.add("bad\xff", SafetensorsDtype::F32, {2}, as_bytes(two)); }).find("UTF-8"),
            std::string::npos);
  EXPECT_NE(message([&] { w.add("e", static_cast<eng_dtype>(99), {2}, as_bytes(two)); }).find("eng_dtype 99"),
            std::string::npos);
  EXPECT_EQ(w.size(), 1u);
}

TEST(SafetensorsWriter, WriteIntoMissingDirectoryNamesThePath) {
  TempDir dir;
  SafetensorsWriter w;
  try {
    w.write(dir / "missing" / "x.safetensors");
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), ENG_ERR_IO);
    EXPECT_NE(std::string(e.what()).find("missing/x.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace engine::io
