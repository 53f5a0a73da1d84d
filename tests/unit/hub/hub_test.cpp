// engine/hub: Hub ids, the cache layouts (one written by the real huggingface_hub, committed by
// scripts/fixtures/make_hub_cache_fixture.py; ModelScope's), and downloads from a fake Hub (fake_hub.py):
// the layout, resumption after a cut connection and of a partial file, a corrupted blob refused, a gated repo
// without a token refused with the reason, an unreachable Hub.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/hub/hub_cache.hpp"
#include "engine/hub/hub_download.hpp"
#include "tests/unit/hub/fake_hub.hpp"

namespace fs = std::filesystem;
using engine::hub::DownloadOptions;
using engine::hub::HubId;
using engine::hub::parse_hub_id;
using engine::hub::RepoType;
using engine::testing::FakeHub;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

std::string sha256(const std::string& s) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < n; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

const fs::path& data_dir() {
  static const fs::path d = fs::path(std::getenv("ENGINE_TEST_DATA")) / "hub";
  return d;
}

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = fs::temp_directory_path() /
            ("hub_test_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(work_);
    fs::create_directories(work_);
    setenv("HF_HUB_CACHE", (work_ / "cache").c_str(), 1);
    setenv("HF_HOME", (work_ / "hf_home").c_str(), 1);
    setenv("MODELSCOPE_CACHE", (work_ / "modelscope").c_str(), 1);
    unsetenv("HF_TOKEN");
    unsetenv("HF_HUB_OFFLINE");
    // A tiny model repo: a regular file and an LFS file (over 1 kB, so the fake Hub redirects it).
    std::string weights;
    for (int i = 0; i < 20000; ++i) weights += static_cast<char>((i * 31 + 7) % 251);
    weights_ = weights;
    write(work_ / "repo_model" / "config.json", "{\"model_type\": \"qwen2\"}\n");
    write(work_ / "repo_model" / "model.safetensors", weights_);
    write(work_ / "repo_model" / "sub" / "notes.txt", "nested\n");
    write(work_ / "repo_data" / "train.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n");
  }
  void TearDown() override { fs::remove_all(work_); }

  std::vector<std::string> repos() const {
    return {"--repo", "model:tiny-org/tiny-model=" + (work_ / "repo_model").string(), "--repo",
            "dataset:tiny-org/tiny-data=" + (work_ / "repo_data").string()};
  }
  static DownloadOptions at(const FakeHub& hub) {
    DownloadOptions o;
    o.endpoint = hub.endpoint();
    o.progress = false;
    return o;
  }

  fs::path work_;
  std::string weights_;
};

}  // namespace

TEST(HubId, ParsesOrgNameAndRevision) {
  auto id = parse_hub_id("Qwen/Qwen2.5-7B-Instruct");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->repo, "Qwen/Qwen2.5-7B-Instruct");
  EXPECT_EQ(id->revision, "main");
  id = parse_hub_id("AI-ModelScope/alpaca-gpt4-data-zh@v1.0", RepoType::kDataset);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->repo, "AI-ModelScope/alpaca-gpt4-data-zh");
  EXPECT_EQ(id->revision, "v1.0");
  EXPECT_EQ(id->str(), "AI-ModelScope/alpaca-gpt4-data-zh@v1.0");
  for (const char* bad : {"model", "/abs/path", "./x/y", "../a", "a/b/c", "a/", "/b", "a b/c", "../x/y", "a/..b",
                          "a/b@", ".a/b"}) {
    EXPECT_FALSE(parse_hub_id(bad)) << bad;
  }
  EXPECT_EQ(engine::hub::repo_folder("/c", *parse_hub_id("org/name")), fs::path("/c/models--org--name"));
  EXPECT_EQ(engine::hub::repo_folder("/c", *parse_hub_id("org/name", RepoType::kDataset)),
            fs::path("/c/datasets--org--name"));
}

TEST_F(HubTest, CacheFoldersFollowHuggingFaceHubEnvironment) {
  EXPECT_EQ(engine::hub::hf_hub_cache(), work_ / "cache");
  unsetenv("HF_HUB_CACHE");
  EXPECT_EQ(engine::hub::hf_hub_cache(), work_ / "hf_home" / "hub");
  unsetenv("HF_HOME");
  setenv("HOME", work_.c_str(), 1);
  unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(engine::hub::hf_hub_cache(), work_ / ".cache" / "huggingface" / "hub");
  unsetenv("MODELSCOPE_CACHE");
  EXPECT_EQ(engine::hub::modelscope_cache(), work_ / ".cache" / "modelscope" / "hub");
}

TEST_F(HubTest, ReadsACacheWrittenByHuggingFaceHub) {
  setenv("HF_HUB_CACHE", (data_dir() / "python_cache").c_str(), 1);
  const nlohmann::json expected = nlohmann::json::parse(read(data_dir() / "EXPECTED.json"));
  for (auto [key, type, repo] : {std::tuple{"model", RepoType::kModel, "tiny-org/py-model"},
                                 std::tuple{"dataset", RepoType::kDataset, "tiny-org/py-data"}}) {
    auto snap = engine::hub::find_cached_snapshot(*parse_hub_id(repo, type));
    ASSERT_TRUE(snap) << repo;
    EXPECT_EQ(snap->commit, expected[key]["commit"].get<std::string>());
    for (const auto& [file, sum] : expected[key]["files"].items()) {
      EXPECT_EQ(sha256(read(snap->path / file)), sum.get<std::string>()) << file;
    }
    // By commit too; an unknown revision or repo is not found.
    HubId by_commit = *parse_hub_id(repo, type);
    by_commit.revision = snap->commit;
    ASSERT_TRUE(engine::hub::find_cached_snapshot(by_commit));
    EXPECT_EQ(engine::hub::find_cached_snapshot(by_commit)->path, snap->path);
  }
  EXPECT_FALSE(engine::hub::find_cached_snapshot(*parse_hub_id("tiny-org/py-model@v2")));
  EXPECT_FALSE(engine::hub::find_cached_snapshot(*parse_hub_id("tiny-org/py-data")));  // a dataset, not a model
}

TEST_F(HubTest, ReadsTheModelScopeCache) {
  write(work_ / "modelscope" / "models" / "Qwen" / "Qwen2___5-0___5B" / "config.json", "{}");
  write(work_ / "modelscope" / "AI-ModelScope" / "old-layout" / "config.json", "{}");
  write(work_ / "modelscope" / "datasets" / "AI-ModelScope" / "alpaca" / "train.jsonl", "{}");
  auto a = engine::hub::find_cached_snapshot(*parse_hub_id("Qwen/Qwen2.5-0.5B"));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->path, work_ / "modelscope" / "models" / "Qwen" / "Qwen2___5-0___5B");
  EXPECT_EQ(a->where, "the ModelScope cache");
  ASSERT_TRUE(engine::hub::find_cached_snapshot(*parse_hub_id("AI-ModelScope/old-layout")));
  ASSERT_TRUE(engine::hub::find_cached_snapshot(*parse_hub_id("AI-ModelScope/alpaca", RepoType::kDataset)));
  EXPECT_FALSE(engine::hub::find_cached_snapshot(*parse_hub_id("Qwen/Qwen2.5-0.5B@v1")));  // no revisions there
}

TEST_F(HubTest, DownloadsIntoTheHuggingFaceLayout) {
  FakeHub hub(work_, repos());
  auto r = engine::hub::download_snapshot(*parse_hub_id("tiny-org/tiny-model"), at(hub));
  EXPECT_EQ(r.fetched, 3u);
  const fs::path repo = work_ / "cache" / "models--tiny-org--tiny-model";
  EXPECT_EQ(read(repo / "refs" / "main"), r.commit);
  EXPECT_EQ(r.snapshot, repo / "snapshots" / r.commit);
  // LFS blob named by its SHA-256, the others by their git blob sha1; relative symlinks into blobs/.
  EXPECT_TRUE(fs::is_symlink(r.snapshot / "model.safetensors"));
  EXPECT_EQ(fs::read_symlink(r.snapshot / "model.safetensors"), fs::path("../../blobs") / sha256(weights_));
  EXPECT_EQ(fs::read_symlink(r.snapshot / "sub" / "notes.txt").string().substr(0, 15), "../../../blobs/");
  EXPECT_EQ(read(r.snapshot / "model.safetensors"), weights_);
  EXPECT_EQ(read(r.snapshot / "config.json"), "{\"model_type\": \"qwen2\"}\n");
  for (const auto& e : fs::directory_iterator(repo / "blobs")) EXPECT_EQ(e.path().extension(), "") << e.path();
  // Found in the cache afterwards; a second download fetches nothing.
  ASSERT_TRUE(engine::hub::find_cached_snapshot(*parse_hub_id("tiny-org/tiny-model")));
  EXPECT_EQ(engine::hub::download_snapshot(*parse_hub_id("tiny-org/tiny-model"), at(hub)).fetched, 0u);
  // --include
  DownloadOptions only = at(hub);
  only.include = {"*.jsonl"};
  auto d = engine::hub::download_snapshot(*parse_hub_id("tiny-org/tiny-data", RepoType::kDataset), only);
  EXPECT_EQ(d.files, std::vector<std::string>{"train.jsonl"});
  EXPECT_TRUE(fs::exists(work_ / "cache" / "datasets--tiny-org--tiny-data" / "snapshots" / d.commit / "train.jsonl"));
  EXPECT_EQ(hub.log().find("auth=yes"), std::string::npos);  // no token anywhere
}

TEST_F(HubTest, ResumesAfterACutConnection) {
  std::vector<std::string> args = repos();
  args.insert(args.end(), {"--cut-after", "7000"});
  FakeHub hub(work_, args);
  auto r = engine::hub::download_snapshot(*parse_hub_id("tiny-org/tiny-model"), at(hub));
  EXPECT_EQ(read(r.snapshot / "model.safetensors"), weights_);
  EXPECT_NE(hub.log().find("range=bytes=7000-"), std::string::npos) << hub.log();
}

TEST_F(HubTest, ResumesAPartialFileFromItsSize) {
  FakeHub hub(work_, repos());
  const fs::path blobs = work_ / "cache" / "models--tiny-org--tiny-model" / "blobs";
  write(blobs / (sha256(weights_) + ".incomplete"), weights_.substr(0, 12345));
  auto r = engine::hub::download_snapshot(*parse_hub_id("tiny-org/tiny-model"), at(hub));
  EXPECT_EQ(read(r.snapshot / "model.safetensors"), weights_);
  EXPECT_NE(hub.log().find("range=bytes=12345-"), std::string::npos) << hub.log();
  EXPECT_FALSE(fs::exists(blobs / (sha256(weights_) + ".incomplete")));
}

TEST_F(HubTest, RefusesACorruptedBlob) {
  std::vector<std::string> args = repos();
  args.insert(args.end(), {"--corrupt", "model.safetensors"});
  FakeHub hub(work_, args);
  try {
    engine::hub::download_snapshot(*parse_hub_id("tiny-org/tiny-model"), at(hub));
    FAIL() << "a corrupted blob was accepted";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors of tiny-org/tiny-model is corrupted"), std::string::npos)
        << e.what();
  }
  const fs::path repo = work_ / "cache" / "models--tiny-org--tiny-model";
  EXPECT_FALSE(fs::exists(repo / "blobs" / sha256(weights_)));
  EXPECT_FALSE(fs::exists(repo / "blobs" / (sha256(weights_) + ".incomplete")));
  EXPECT_FALSE(fs::exists(repo / "snapshots" / read(repo / "refs" / "main") / "model.safetensors"));
}

TEST_F(HubTest, RefusesAGatedRepoWithoutATokenAndSaysWhy) {
  std::vector<std::string> args = repos();
  args.insert(args.end(), {"--gated", "tiny-org/tiny-model"});
  FakeHub hub(work_, args);
  const HubId id = *parse_hub_id("tiny-org/tiny-model");
  try {
    engine::hub::download_snapshot(id, at(hub));
    FAIL() << "a gated repo was downloaded without a token";
  } catch (const engine::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("models tiny-org/tiny-model is gated (HTTP 401)"), std::string::npos) << m;
    EXPECT_NE(m.find("Access to model tiny-org/tiny-model is restricted"), std::string::npos) << m;
    EXPECT_NE(m.find("set HF_TOKEN"), std::string::npos) << m;
  }
  setenv("HF_TOKEN", "wrong-token", 1);
  try {
    engine::hub::download_snapshot(id, at(hub));
    FAIL() << "a wrong token was accepted";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("HTTP 403"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("wrong-token"), std::string::npos) << "the token is in the message";
  }
  unsetenv("HF_TOKEN");
  write(work_ / "hf_home" / "token", "good-token\n");  // the file huggingface_hub's login writes
  auto r = engine::hub::download_snapshot(id, at(hub));
  EXPECT_EQ(read(r.snapshot / "model.safetensors"), weights_);
  // The token went to the Hub's own paths, not to the LFS store on another host.
  const std::string log = hub.log();
  EXPECT_NE(log.find("/api/models/tiny-org/tiny-model/revision/main range=- auth=yes"), std::string::npos) << log;
  EXPECT_NE(log.find("GET /lfs/" + sha256(weights_) + " range=- auth=no"), std::string::npos) << log;
}

TEST_F(HubTest, AnUnreachableHubIsReportedAsSuch) {
  DownloadOptions o;
  o.endpoint = "http://127.0.0.1:9";  // discard port: nothing listens
  o.progress = false;
  EXPECT_THROW(engine::hub::download_snapshot(*parse_hub_id("tiny-org/tiny-model"), o), engine::hub::HubUnreachable);
}

TEST(HubGlob, MatchesAsHuggingFaceHubAllowPatterns) {
  using engine::hub::matches_any;
  EXPECT_TRUE(matches_any("model-00001-of-00002.safetensors", {"*.safetensors"}));
  EXPECT_TRUE(matches_any("sub/dir/a.json", {"*.json"}));  // '*' crosses '/', as fnmatch in Python
  EXPECT_TRUE(matches_any("sub/a.bin", {"sub/"}));
  EXPECT_FALSE(matches_any("a.bin", {"*.json", "*.safetensors"}));
  EXPECT_TRUE(matches_any("anything", {}));
}
