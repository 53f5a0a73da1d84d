// Hub ids end to end, against the fake Hub of tests/unit/hub (fake_hub.py): `engine run` with model.path and
// data.train given as org/name downloads both into the Hugging Face cache and trains; run again offline
// (HF_HUB_OFFLINE=1, the Hub stopped) it trains from the cache; with neither cache nor Hub it says what it
// needed and the command that fetches it. huggingface_hub, where installed, reads the engine's cache back.
#include "tests/e2e/e2e_support.hpp"
#include "tests/unit/hub/fake_hub.hpp"

namespace engine::e2e {
namespace {

std::vector<std::string> run_args(const fs::path& out, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> a = {"run", (source_dir() / "recipes/tiny_lora.toml").string(),
                                "--set", "model.path=tiny-org/tiny-model",
                                "--set", "data.train=tiny-org/tiny-data",
                                "--set", "data.eval=tiny-org/tiny-data",
                                "--set", "train.output_dir=" + out.string(),
                                "--set", "train.max_steps=3",
                                "--set", "train.eval_every=3",
                                "--set", "checkpoint.save_every=0",
                                "--set", "log.every=1"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

TEST(HubE2E, RunDownloadsByHubIdThenRunsOffline) {
  const fs::path dir = fresh_dir("hub");
  setenv("HF_HUB_CACHE", (dir / "cache").c_str(), 1);
  setenv("HF_HOME", (dir / "hf_home").c_str(), 1);
  setenv("MODELSCOPE_CACHE", (dir / "modelscope").c_str(), 1);
  unsetenv("HF_HUB_OFFLINE");
  unsetenv("HF_TOKEN");
  ASSERT_EQ(run_engine({"init-model", "--arch", "qwen2", "--preset", "tiny", "--out", (dir / "repo_model").string()},
                       dir / "init.log"),
            0)
      << read_file(dir / "init.log");
  fs::create_directories(dir / "repo_data");
  fs::copy_file(source_dir() / "data/tiny/train.jsonl", dir / "repo_data" / "train.jsonl");

  // Neither cache nor Hub: which files, and how to fetch them.
  setenv("HF_ENDPOINT", "http://127.0.0.1:9", 1);
  EXPECT_EQ(run_engine(run_args(dir / "out0"), dir / "unreachable.log"), 1);
  std::string log = read_file(dir / "unreachable.log");
  EXPECT_NE(log.find("model.path tiny-org/tiny-model is a Hub model id that is not in the Hugging Face cache"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("the Hub is unreachable"), std::string::npos) << log;
  EXPECT_NE(log.find("config.json, tokenizer.json and the *.safetensors weights"), std::string::npos) << log;
  EXPECT_NE(log.find("`engine download tiny-org/tiny-model`"), std::string::npos) << log;

  {
    fs::create_directories(dir / "repo_parquet" / "data");
    std::ofstream(dir / "repo_parquet" / "data" / "train-00000-of-00001.parquet") << "PAR1";
    engine::testing::FakeHub hub(dir, {"--repo", "model:tiny-org/tiny-model=" + (dir / "repo_model").string(),
                                       "--repo", "dataset:tiny-org/tiny-data=" + (dir / "repo_data").string(),
                                       "--repo", "dataset:tiny-org/parquet-only=" + (dir / "repo_parquet").string()});
    setenv("HF_ENDPOINT", hub.endpoint().c_str(), 1);
    ASSERT_EQ(run_engine(run_args(dir / "out1", {"--set", "log.tensorboard=true"}), dir / "online.log"), 0)
        << read_file(dir / "online.log");
    // log.tensorboard: an event file under <output_dir>/runs/ with the training and evaluation curves (its
    // format is checked against TensorBoard's reader by tensorboard_writer_test).
    std::string events;
    for (const auto& e : fs::directory_iterator(dir / "out1" / "runs"))
      if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) events += read_file(e.path());
    for (const char* tag : {"brain.Event:2", "train/loss", "train/learning_rate", "train/grad_norm",
                            "train/tokens_per_s", "train/memory_gib", "eval/loss"})
      EXPECT_NE(events.find(tag), std::string::npos) << tag;
    log = read_file(dir / "online.log");
    EXPECT_NE(log.find("downloaded tiny-org/tiny-model model.safetensors"), std::string::npos) << log;
    EXPECT_NE(log.find("downloaded tiny-org/tiny-data train.jsonl"), std::string::npos) << log;
    EXPECT_NE(log.find("eval at step 3"), std::string::npos) << log;
    EXPECT_EQ(train_lines(dir / "out1").size(), 3u);
    // The "try it" line runs as printed (the engine by its full path; the model is the cache's snapshot).
    const size_t at = log.find("try it: ");
    ASSERT_NE(at, std::string::npos) << log;
    const std::string try_it = log.substr(at + 8, log.find('\n', at) - at - 8);
    EXPECT_EQ(try_it.rfind(engine_binary().string() + " generate --model " +
                               (dir / "cache" / "models--tiny-org--tiny-model" / "snapshots").string(),
                           0),
              0u)
        << try_it;
    EXPECT_EQ(std::system((try_it + " --max-new-tokens 2 > " + (dir / "try.log").string() + " 2>&1").c_str()), 0)
        << read_file(dir / "try.log");

    // name#N from a Hub dataset; a Parquet-only dataset is refused before anything is downloaded.
    ASSERT_EQ(run_engine(run_args(dir / "out_n", {"--set", "data.train=tiny-org/tiny-data#8", "--set", "data.eval=", "--set",
                                                          "train.eval_every=0"}),
                         dir / "count.log"),
              0)
        << read_file(dir / "count.log");
    EXPECT_NE(read_file(dir / "count.log").find("data: tiny-org/tiny-data#8 (8 of 384 records) -> "), std::string::npos)
        << read_file(dir / "count.log");
    EXPECT_EQ(run_engine(run_args(dir / "out_pq", {"--set", "data.train=tiny-org/parquet-only"}), dir / "pq.log"), 1);
    EXPECT_NE(read_file(dir / "pq.log").find("data.train tiny-org/parquet-only has only Parquet files (e.g. "
                                            "data/train-00000-of-00001.parquet), which the engine does not read"),
              std::string::npos)
        << read_file(dir / "pq.log");
    EXPECT_EQ(hub.log().find("/datasets/tiny-org/parquet-only/resolve"), std::string::npos);

    // engine download: the snapshot folder on stdout, nothing fetched twice.
    ASSERT_EQ(run_engine({"download", "tiny-org/tiny-model", "--include", "*.json"}, dir / "download.log"), 0);
    log = read_file(dir / "download.log");
    EXPECT_NE(log.find((dir / "cache" / "models--tiny-org--tiny-model" / "snapshots").string()), std::string::npos)
        << log;
    EXPECT_NE(log.find("(0 fetched now)"), std::string::npos) << log;
    EXPECT_EQ(run_engine({"download", "tiny-org/nope"}, dir / "missing.log"), 1);
    EXPECT_NE(read_file(dir / "missing.log").find("not found on the Hub (HTTP 404, RepoNotFound"),
              std::string::npos)
        << read_file(dir / "missing.log");
  }

  // The Hub is gone: offline from the cache, with HF_HUB_OFFLINE and with --offline.
  setenv("HF_ENDPOINT", "http://127.0.0.1:9", 1);
  setenv("HF_HUB_OFFLINE", "1", 1);
  ASSERT_EQ(run_engine(run_args(dir / "out2"), dir / "offline.log"), 0) << read_file(dir / "offline.log");
  EXPECT_NE(read_file(dir / "offline.log").find("(the Hugging Face cache)"), std::string::npos)
      << read_file(dir / "offline.log");
  EXPECT_EQ(run_engine({"download", "tiny-org/tiny-model"}, dir / "download_offline.log"), 1);
  EXPECT_NE(read_file(dir / "download_offline.log").find("HF_HUB_OFFLINE is set"), std::string::npos);
  unsetenv("HF_HUB_OFFLINE");
  setenv("HF_HUB_CACHE", (dir / "empty_cache").c_str(), 1);
  EXPECT_EQ(run_engine(run_args(dir / "out3", {"--offline"}), dir / "offline_empty.log"), 1);
  log = read_file(dir / "offline_empty.log");
  EXPECT_NE(log.find("model.path tiny-org/tiny-model is not in the Hugging Face cache (" +
                     (dir / "empty_cache").string() + ")"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("downloads are off (HF_HUB_OFFLINE=1 or --offline); fetch it with `engine download "
                     "tiny-org/tiny-model`"),
            std::string::npos)
      << log;

  // huggingface_hub reads the cache the engine wrote (where it is installed; CI checks the layout above).
  const std::string py =
      "python3 -c \"import huggingface_hub as h; "
      "p = h.snapshot_download('tiny-org/tiny-model', cache_dir='" + (dir / "cache").string() +
      "', local_files_only=True); r = h.scan_cache_dir('" + (dir / "cache").string() +
      "'); assert not r.warnings, r.warnings; print('python read', p)\" > " + (dir / "py.log").string() + " 2>&1";
  if (std::system("python3 -c 'import huggingface_hub' 2>/dev/null") == 0) {
    EXPECT_EQ(std::system(py.c_str()), 0) << read_file(dir / "py.log");
    EXPECT_NE(read_file(dir / "py.log").find("python read"), std::string::npos);
  } else {
    std::cout << "huggingface_hub is not installed: skipped reading the engine's cache back with it\n";
  }
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace engine::e2e
