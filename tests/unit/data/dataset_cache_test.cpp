// Tokenized-data cache and prepare_dataset: a second run hits the cache with identical samples; changed
// options or data miss it; a corrupt, truncated or foreign cache file is rebuilt, never trusted.
#include "engine/data/dataset_cache.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "engine/core/error.hpp"
#include "engine/data/prepared_dataset.hpp"
#include "tests/unit/data/test_paths.hpp"

namespace engine::data {
namespace {

using testing::test_data;

class DatasetCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() /
          ("engine_data_cache_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
           "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    data = dir / "chat.jsonl";
    std::filesystem::copy_file(test_data("chat.jsonl"), data);
    options.cache_dir = dir / "cache";
    options.tokenizer_file = test_data("small_tokenizer.json");
    options.packing = {.max_seq_len = 64, .packing = true};
    options.threads = 2;
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  PreparedDataset prepare() { return prepare_dataset(data, tok, chat, options); }

  std::filesystem::path dir, data;
  Tokenizer tok = Tokenizer::from_file(test_data("small_tokenizer.json"));
  ChatTemplate chat = ChatTemplate::by_name("chatml");
  PrepareOptions options;
};

void expect_same(const std::vector<TokenizedSample>& a, const std::vector<TokenizedSample>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].ids, b[i].ids);
    EXPECT_EQ(a[i].labels, b[i].labels);
  }
}

TEST_F(DatasetCacheTest, SecondRunHitsTheCache) {
  const PreparedDataset first = prepare();
  EXPECT_FALSE(first.from_cache);
  EXPECT_EQ(first.samples.size(), 3u);
  EXPECT_EQ(first.skipped, 5u);
  ASSERT_TRUE(std::filesystem::exists(first.cache_file));
  const PreparedDataset second = prepare();
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.cache_file, first.cache_file);
  EXPECT_EQ(second.skipped, 5u);
  expect_same(first.samples, second.samples);
  EXPECT_EQ(second.plan.rows.size(), first.plan.rows.size());
}

TEST_F(DatasetCacheTest, ChangedOptionsOrDataMiss) {
  const PreparedDataset first = prepare();
  options.sample.train_on_prompt = true;
  const PreparedDataset other_options = prepare();
  EXPECT_FALSE(other_options.from_cache);
  EXPECT_NE(other_options.cache_file, first.cache_file);
  options.sample.train_on_prompt = false;
  chat.set_system_prompt("New default.");
  EXPECT_FALSE(prepare().from_cache);
  chat.set_system_prompt(std::nullopt);
  EXPECT_TRUE(prepare().from_cache);
  std::ofstream(data, std::ios::app)
      << R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})"
      << "\n";
  const PreparedDataset more = prepare();
  EXPECT_FALSE(more.from_cache);
  EXPECT_EQ(more.samples.size(), 4u);
}

TEST_F(DatasetCacheTest, CorruptOrTruncatedCacheIsRebuilt) {
  const PreparedDataset first = prepare();
  const auto file = first.cache_file;
  const CacheKey key = make_cache_key(options.tokenizer_file, data, tokenization_options_text(options, chat));
  ASSERT_TRUE(read_cache(file, key).has_value());
  EXPECT_FALSE(read_cache(file, CacheKey{key.a, key.b + 1}).has_value());  // another key
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(60);
    f.put('\x7f');  // flips a stored id: the checksum catches it
  }
  EXPECT_FALSE(read_cache(file, key).has_value());
  const PreparedDataset rebuilt = prepare();
  EXPECT_FALSE(rebuilt.from_cache);
  expect_same(rebuilt.samples, first.samples);
  EXPECT_TRUE(read_cache(file, key).has_value());
  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 5);
  EXPECT_FALSE(read_cache(file, key).has_value());
  std::ofstream(file, std::ios::trunc) << "garbage";
  EXPECT_FALSE(read_cache(file, key).has_value());
  EXPECT_FALSE(prepare().from_cache);
  EXPECT_TRUE(prepare().from_cache);
}

TEST_F(DatasetCacheTest, ConcurrentBuildersLeaveOneValidFile) {
  // Several ranks preparing the same data at once: each writes its own temporary file, the renames race,
  // and the cache that remains is complete.
  std::vector<PreparedDataset> results(4);
  std::vector<std::thread> pool;
  for (auto& r : results) pool.emplace_back([&] { r = prepare(); });
  for (auto& t : pool) t.join();
  for (const auto& r : results) expect_same(r.samples, results[0].samples);
  EXPECT_TRUE(prepare().from_cache);
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(options.cache_dir)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1u);  // no temporary file left behind
}

TEST_F(DatasetCacheTest, TemplateWhoseEndOfTurnIsNotATokenIsRefused) {
  chat = ChatTemplate::by_name("llama3");  // the small tokenizer has no <|eot_id|>
  try {
    (void)prepare();
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("<|eot_id|>, which is not a token"), std::string::npos) << e.what();
  }
}

TEST_F(DatasetCacheTest, FailModeStopsOnTheFirstBadRecord) {
  options.dataset.on_error = OnError::kFail;
  try {
    (void)prepare();
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("set data.on_error = \"skip\""), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace engine::data
