#include "engine/train/checkpoint_dir.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <stdexcept>

#include "engine/core/error.hpp"

namespace fs = std::filesystem;
using namespace engine::train;

namespace {

fs::path fresh_dir(const char* name) {
  fs::path d = fs::temp_directory_path() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_state(const fs::path& dir, int64_t step) {
  std::ofstream(dir / "trainer_state.json") << "{\"step\": " << step << "}";
  std::ofstream(dir / "weights.bin") << "w" << step;
}

std::string read(const fs::path& p) {
  std::ifstream f(p);
  std::string s;
  std::getline(f, s);
  return s;
}

}  // namespace

TEST(CheckpointDir, PublishesMovesLatestAndPrunesKeepLast) {
  fs::path out = fresh_dir("checkpoint_dir_test_publish");
  for (int64_t step : {2, 4, 6})
    publish_checkpoint(out, step, 2, [&](const fs::path& d) { write_state(d, step); });
  auto all = list_checkpoints(out);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 4);
  EXPECT_EQ(all[1].first, 6);
  EXPECT_FALSE(fs::exists(out / "checkpoint-2"));
  EXPECT_EQ(read(out / "latest"), "checkpoint-6");
  EXPECT_EQ(read(out / "checkpoint-6" / "weights.bin"), "w6");
  EXPECT_EQ(latest_checkpoint(out), out / "checkpoint-6");
  EXPECT_FALSE(fs::exists(out / ".tmp-checkpoint-6"));
  fs::remove_all(out);
}

TEST(CheckpointDir, AFailedWriteLeavesThePreviousCheckpointLatest) {
  fs::path out = fresh_dir("checkpoint_dir_test_fail");
  publish_checkpoint(out, 3, 1, [&](const fs::path& d) { write_state(d, 3); });
  EXPECT_THROW(publish_checkpoint(out, 5, 1,
                                  [&](const fs::path& d) {
                                    std::ofstream(d / "weights.bin") << "half";
                                    throw std::runtime_error("killed while writing");
                                  }),
               std::runtime_error);
  EXPECT_EQ(read(out / "latest"), "checkpoint-3");
  EXPECT_TRUE(fs::exists(out / "checkpoint-3" / "trainer_state.json"));  // keep_last did not prune it
  EXPECT_FALSE(fs::exists(out / "checkpoint-5"));
  // A directory without trainer_state.json (as a crash mid-rename could never make, but a user could) is not
  // a checkpoint; auto resume ignores it.
  fs::create_directories(out / "checkpoint-9");
  EXPECT_EQ(latest_checkpoint(out), out / "checkpoint-3");
  fs::remove_all(out);
}

TEST(CheckpointDir, ResolveResume) {
  fs::path out = fresh_dir("checkpoint_dir_test_resume");
  EXPECT_EQ(resolve_resume(out, "auto"), std::nullopt);
  EXPECT_EQ(resolve_resume(out, "none"), std::nullopt);
  publish_checkpoint(out, 1, 0, [&](const fs::path& d) { write_state(d, 1); });
  publish_checkpoint(out, 7, 0, [&](const fs::path& d) { write_state(d, 7); });
  EXPECT_EQ(resolve_resume(out, "auto"), out / "checkpoint-7");
  EXPECT_EQ(resolve_resume(out, "none"), std::nullopt);
  EXPECT_EQ(resolve_resume(out, (out / "checkpoint-1").string()), out / "checkpoint-1");
  EXPECT_THROW(resolve_resume(out, (out / "nope").string()), engine::Error);
  // `latest` naming a pruned directory falls back to the newest complete one
  std::ofstream(out / "latest") << "checkpoint-99\n";
  EXPECT_EQ(latest_checkpoint(out), out / "checkpoint-7");
  // the same step saved twice replaces the old directory
  publish_checkpoint(out, 7, 0, [&](const fs::path& d) {
    write_state(d, 7);
    std::ofstream(d / "weights.bin") << "again";
  });
  EXPECT_EQ(read(out / "checkpoint-7" / "weights.bin"), "again");
  fs::remove_all(out);
}
