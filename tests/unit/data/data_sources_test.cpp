// engine/data/data_sources: name#N, CSV records, seeded sampling as ms-swift's dataset#N, mixtures written
// once, the data file of a folder, Parquet refused with how to convert.
#include "engine/data/data_sources.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/core/error.hpp"
#include "engine/data/dataset.hpp"

namespace engine::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class DataSources : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("data_sources_test_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    fs::create_directories((dir_ / name).parent_path());
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return dir_ / name;
  }
  static std::string message_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }
  fs::path dir_;
};

TEST_F(DataSources, ParsesACountSuffix) {
  DataSource s = parse_data_source("data/a.jsonl#500");
  EXPECT_EQ(s.path, "data/a.jsonl");
  EXPECT_EQ(s.count, 500);
  EXPECT_EQ(parse_data_source("data/a.jsonl").count, -1);
  EXPECT_NE(message_of([] { parse_data_source("a.jsonl#many"); }).find("'#' must be followed by a positive number"),
            std::string::npos);
  EXPECT_THROW(parse_data_source("a.jsonl#0"), Error);
  // A file whose name really has '#N' is taken whole.
  const fs::path odd = write("odd#3", "{}\n");
  EXPECT_EQ(parse_data_source(odd.string()).count, -1);
}

TEST_F(DataSources, ReadsCsvAsRecordsOfStrings) {
  const fs::path f = write("a.csv",
                           "\xEF\xBB\xBFinstruction,input,output\r\n"
                           "\"Say \"\"hi\"\"\",,hi\r\n"
                           "\"two\nlines\",\"a, b\",ok\n"
                           "\n"
                           "last,x,y");
  std::vector<std::string> r = read_record_texts(f);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(json::parse(r[0]), json({{"instruction", "Say \"hi\""}, {"input", ""}, {"output", "hi"}}));
  EXPECT_EQ(json::parse(r[1]), json({{"instruction", "two\nlines"}, {"input", "a, b"}, {"output", "ok"}}));
  EXPECT_EQ(json::parse(r[2])["output"], "y");
  // The alpaca reader takes them as any record.
  DatasetOptions o;
  Example e = parse_record(r[1], o, "a.csv:3");
  ASSERT_EQ(e.messages.size(), 2u);
  EXPECT_EQ(e.messages[0].content, "two\nlines\n\na, b");
  const fs::path bad = write("bad.csv", "a,b\n1,2\n1,2,3\n");
  EXPECT_NE(message_of([&] { read_record_texts(bad); }).find("bad.csv:3: 3 fields, but the header has 2"),
            std::string::npos);
  const fs::path open = write("open.csv", "a,b\n\"1,2\n");
  EXPECT_NE(message_of([&] { read_record_texts(open); }).find("open.csv:2: a quoted field is not closed"),
            std::string::npos);
}

TEST_F(DataSources, ReadsJsonArraysAndJsonlLines) {
  EXPECT_EQ(read_record_texts(write("a.json", "[{\"text\": \"x\"}, {\"text\": \"y\"}]")).size(), 2u);
  std::vector<std::string> l = read_record_texts(write("a.jsonl", "{\"text\": \"x\"}\r\n\nnot json\n"));
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[1], "not json");  // kept verbatim for the reader to report
}

TEST_F(DataSources, SamplesAsMsSwiftDoes) {
  // Fewer than the size: distinct records, seeded, another seed another choice.
  std::vector<size_t> a = sample_indices(100, 10, 42);
  EXPECT_EQ(a.size(), 10u);
  EXPECT_EQ(std::set<size_t>(a.begin(), a.end()).size(), 10u);
  EXPECT_EQ(a, sample_indices(100, 10, 42));
  EXPECT_NE(a, sample_indices(100, 10, 43));
  // More than the size: every record floor(N / size) times, then distinct ones for the rest.
  std::vector<size_t> b = sample_indices(4, 11, 1);
  ASSERT_EQ(b.size(), 11u);
  std::map<size_t, int> seen;
  for (size_t i : b) ++seen[i];
  int threes = 0;
  for (auto [i, n] : seen) {
    EXPECT_TRUE(n == 2 || n == 3) << i;
    threes += n == 3;
  }
  EXPECT_EQ(threes, 3);
  EXPECT_EQ(sample_indices(3, -1, 0), (std::vector<size_t>{0, 1, 2}));
}

TEST_F(DataSources, WritesAMixtureOnce) {
  std::string jsonl;
  for (int i = 0; i < 10; ++i) jsonl += "{\"instruction\": \"q" + std::to_string(i) + "\", \"output\": \"a\"}\n";
  const fs::path a = write("a.jsonl", jsonl);
  const fs::path c = write("b.csv", "instruction,output\nx,1\ny,2\nz,3\nw,4\n");
  // A single whole JSONL source is read in place.
  EXPECT_EQ(materialise_sources({{a, -1, 0, "a"}}, 1, dir_ / "cache"), a);
  const fs::path m = materialise_sources({{a, 3, 0, "a#3"}, {c, -1, 0.5, "b.csv"}}, 7, dir_ / "cache");
  EXPECT_EQ(m.parent_path(), dir_ / "cache");
  std::vector<std::string> lines = read_record_texts(m);
  ASSERT_EQ(lines.size(), 5u);  // 3 of a, round(0.5 * 4) of b
  for (int i = 0; i < 3; ++i) EXPECT_EQ(json::parse(lines[i])["output"], "a");
  for (int i = 3; i < 5; ++i) EXPECT_TRUE(json::parse(lines[i]).contains("instruction"));
  EXPECT_EQ(materialise_sources({{a, 3, 0, "a#3"}, {c, -1, 0.5, "b.csv"}}, 7, dir_ / "cache"), m);  // same file
  EXPECT_NE(materialise_sources({{a, 3, 0, "a#3"}}, 8, dir_ / "cache"), m);
  const Dataset d = read_dataset(m, DatasetOptions{});
  EXPECT_EQ(d.examples.size(), 5u);
}

TEST_F(DataSources, RefusesParquetWithHowToConvert) {
  const fs::path p = write("train-00000.parquet", "PAR1");
  const std::string m = message_of([&] { materialise_sources({{p, -1, 0, "x"}}, 0, dir_ / "cache"); });
  EXPECT_NE(m.find("is Parquet, which the engine does not read; convert it to JSONL"), std::string::npos) << m;
  EXPECT_NE(m.find("pd.read_parquet('" + p.string() + "').to_json('train-00000.jsonl', orient='records', lines=True"),
            std::string::npos)
      << m;
  write("pq/data/train-00000.parquet", "PAR1");
  write("pq/README.md", "# a dataset");
  EXPECT_NE(message_of([&] { dataset_file_in(dir_ / "pq", "train", "data.train org/pq"); })
                .find("data.train org/pq: " + (dir_ / "pq/data/train-00000.parquet").string() + " is Parquet"),
            std::string::npos);
}

TEST_F(DataSources, FindsTheDataFileOfAFolder) {
  write("one/data.csv", "a\n1\n");
  write("one/dataset_info.json", "{}");
  EXPECT_EQ(dataset_file_in(dir_ / "one", "train", "x"), dir_ / "one/data.csv");
  write("split/train.jsonl", "{}\n");
  write("split/eval.jsonl", "{}\n");
  EXPECT_EQ(dataset_file_in(dir_ / "split", "train", "x"), dir_ / "split/train.jsonl");
  EXPECT_EQ(dataset_file_in(dir_ / "split", "eval", "x"), dir_ / "split/eval.jsonl");
  write("many/a.jsonl", "{}\n");
  write("many/b.jsonl", "{}\n");
  EXPECT_NE(message_of([&] { dataset_file_in(dir_ / "many", "train", "data.train m"); })
                .find("holds several data files (a.jsonl, b.jsonl)"),
            std::string::npos);
  fs::create_directories(dir_ / "empty");
  EXPECT_NE(message_of([&] { dataset_file_in(dir_ / "empty", "train", "x"); }).find("holds no JSON, JSONL or CSV"),
            std::string::npos);
}

// A link back into the folder (a loop) is followed once: the folder's one file is found, not 40 copies of it
// down to the kernel's link limit; a folder it may not list is named instead of a raw filesystem_error.
TEST_F(DataSources, ALinkLoopInADataFolderIsListedOnce) {
  write("loop/train.jsonl", "{}\n");
  fs::create_directory_symlink("..", dir_ / "loop/up");
  fs::create_directory_symlink(".", dir_ / "loop/self");
  EXPECT_EQ(dataset_file_in(dir_ / "loop", "train", "x"), dir_ / "loop/train.jsonl");
  for (int i = 0; i < 12; ++i) write("twelve/f" + std::to_string(i) + ".jsonl", "{}\n");
  const std::string m = message_of([&] { dataset_file_in(dir_ / "twelve", "train", "data.train t"); });
  EXPECT_NE(m.find("and 2 more"), std::string::npos) << m;
}

}  // namespace
}  // namespace engine::data
