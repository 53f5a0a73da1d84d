#include "engine/hub/hub_download.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/file.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "engine/hub/hub_cache.hpp"

namespace engine::hub {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~CurlGlobal() { curl_global_cleanup(); }
};

void ensure_curl() { static CurlGlobal g; }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ')) s.pop_back();
  size_t b = s.find_first_not_of(' ');
  return b == std::string::npos ? "" : s.substr(b);
}

// "W/\"abc\"" -> "abc", as huggingface_hub's _normalize_etag.
std::string normalize_etag(std::string e) {
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

std::string read_token() {
  if (const char* t = std::getenv("HF_TOKEN"); t != nullptr && *t != '\0') return trim(t);
  if (const char* t = std::getenv("HUGGING_FACE_HUB_TOKEN"); t != nullptr && *t != '\0') return trim(t);
  fs::path file = hf_home() / "token";
  if (const char* p = std::getenv("HF_TOKEN_PATH"); p != nullptr && *p != '\0') file = p;
  std::ifstream in(file);
  std::string token;
  if (in) std::getline(in, token);
  return trim(token);
}

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; the last value of each
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) r->headers.clear();  // a new response (after a redirect)
  size_t colon = line.find(':');
  if (colon != std::string::npos) r->headers[lower(line.substr(0, colon))] = trim(line.substr(colon + 1));
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

class Request {
 public:
  Request(const std::string& url, const std::string& token) : url_(url) {
    ensure_curl();
    curl_ = curl_easy_init();
    if (curl_ == nullptr) fail("cannot start libcurl");
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_USERAGENT, "engine/hub (huggingface_hub-compatible)");
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &response_);
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT, 20L);
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_LIMIT, 1L);  // a stalled transfer ends after 60 s
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    headers_ = curl_slist_append(headers_, "Accept-Encoding: identity");
    if (!token.empty()) headers_ = curl_slist_append(headers_, ("Authorization: Bearer " + token).c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
  }
  ~Request() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(curl_);
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  CURL* handle() { return curl_; }
  Response& response() { return response_; }

  // Performs the request; a transport failure throws HubUnreachable when nothing answered, else returns it.
  CURLcode perform() {
    CURLcode rc = curl_easy_perform(curl_);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &response_.status);
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY ||
        (rc == CURLE_OPERATION_TIMEDOUT && response_.status == 0)) {
      throw HubUnreachable(fmt::format("cannot reach {}: {}", url_, curl_easy_strerror(rc)), ENG_ERR_IO);
    }
    return rc;
  }

 private:
  std::string url_;
  CURL* curl_ = nullptr;
  curl_slist* headers_ = nullptr;
  Response response_;
};

std::string escape_path(const std::string& path) {
  ensure_curl();
  std::string out;
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    std::string part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    char* e = curl_easy_escape(nullptr, part.c_str(), static_cast<int>(part.size()));
    out += e;
    curl_free(e);
    if (slash == std::string::npos) break;
    out += '/';
    start = slash + 1;
  }
  return out;
}

// What the Hub said on a refusal, for the message: X-Error-Message, else the JSON body's "error".
std::string hub_reason(const Response& r) {
  std::string msg = r.header("x-error-message");
  if (msg.empty()) {
    json j = json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_string()) msg = j["error"].get<std::string>();
  }
  return msg.empty() ? "" : " (the Hub says: " + msg + ")";
}

[[noreturn]] void refuse(const HubId& id, const std::string& what, const Response& r, bool have_token) {
  const std::string reason = hub_reason(r);
  const std::string code = r.header("x-error-code");
  if (r.status == 401 || r.status == 403) {
    std::string how = have_token ? "the token in HF_TOKEN (or the token file) has no access to it; request "
                                   "access on the repo's page on the Hub, or use a token that has it"
                                 : "no token was found: set HF_TOKEN (or run `huggingface-cli login`, whose token "
                                   "file the engine reads) with an account that has access";
    fail_with(ENG_ERR_IO, "{} {} is {} (HTTP {}){}: {}", repo_type_plural(id.type), id.repo,
              code == "GatedRepo" ? "gated" : "not accessible", r.status, reason, how);
  }
  if (r.status == 404) {
    fail_with(ENG_ERR_IO, "{} of {} {} not found on the Hub (HTTP 404{}){}; check the id{}", what,
              repo_type_plural(id.type), id.str(), code.empty() ? "" : ", " + code, reason,
              id.type == RepoType::kModel ? " (a dataset needs --repo-type dataset)" : "");
  }
  fail_with(ENG_ERR_IO, "{} of {}: HTTP {}{}", what, id.str(), r.status, reason);
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.1f} {}", b, units[u]);
}

struct Progress {
  std::string label;
  curl_off_t offset = 0;  // bytes already on disk before this transfer
  curl_off_t total = 0;   // expected size (0: unknown)
  bool live = false;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), last = start;
};

int on_progress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* p = static_cast<Progress*>(user);
  if (!p->live) return 0;
  auto now = std::chrono::steady_clock::now();
  if (now - p->last < std::chrono::milliseconds(200)) return 0;
  p->last = now;
  double secs = std::chrono::duration<double>(now - p->start).count();
  curl_off_t total = p->total > 0 ? p->total : p->offset + dltotal;
  std::fprintf(stderr, "\r%s  %s / %s  %s/s   ", p->label.c_str(),
               human_bytes(static_cast<double>(p->offset + dlnow)).c_str(),
               human_bytes(static_cast<double>(total)).c_str(),
               human_bytes(secs > 0 ? static_cast<double>(dlnow) / secs : 0).c_str());
  return 0;
}

size_t on_file(char* data, size_t size, size_t n, void* user) {
  auto* f = static_cast<std::FILE*>(user);
  return std::fwrite(data, size, n, f) * size;
}

std::string sha256_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail_with(ENG_ERR_IO, "cannot read {}", file.string());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

// The lock huggingface_hub takes around a blob (filelock's flock on <cache>/.locks/<repo folder>/<etag>.lock),
// so that an engine and a Python process (or two engines) never write the same blob at once.
class BlobLock {
 public:
  BlobLock(const fs::path& cache, const fs::path& repo, const std::string& etag) {
    const fs::path dir = cache / ".locks" / repo.filename();
    fs::create_directories(dir);
    fd_ = ::open((dir / (etag + ".lock")).c_str(), O_RDWR | O_CREAT, 0644);
    if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0)
      fail_with(ENG_ERR_IO, "cannot lock {}", (dir / (etag + ".lock")).string());
  }
  ~BlobLock() {
    if (fd_ >= 0) {
      ::flock(fd_, LOCK_UN);
      ::close(fd_);
    }
  }
  BlobLock(const BlobLock&) = delete;
  BlobLock& operator=(const BlobLock&) = delete;

 private:
  int fd_ = -1;
};

bool is_sha256(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Downloads `url` into `part` (resuming from its size), `expected` bytes when known.
void fetch_blob(const std::string& url, const std::string& token, const fs::path& part, curl_off_t expected,
                const std::string& label, const DownloadOptions& options, const HubId& id,
                const std::string& file) {
  for (int attempt = 0;; ++attempt) {
    std::error_code ec;
    curl_off_t have = fs::exists(part, ec) ? static_cast<curl_off_t>(fs::file_size(part)) : 0;
    if (expected > 0 && have > expected) {
      fs::remove(part);
      have = 0;
    }
    if (expected > 0 && have == expected) return;
    std::FILE* f = std::fopen(part.c_str(), have > 0 ? "ab" : "wb");
    if (f == nullptr) fail_with(ENG_ERR_IO, "cannot write {}", part.string());
    Request req(url, token);
    Progress prog;
    prog.label = label;
    prog.offset = have;
    prog.total = expected;
    prog.live = options.progress && isatty(STDERR_FILENO) != 0;
    curl_easy_setopt(req.handle(), CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(req.handle(), CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(req.handle(), CURLOPT_FAILONERROR, 0L);
    if (have > 0) curl_easy_setopt(req.handle(), CURLOPT_RESUME_FROM_LARGE, have);
    // Error bodies go to memory, file bytes to the file: decided per response by the status.
    struct Sink {
      std::FILE* file;
      Request* req;
      std::string error_body;
      bool truncated_for_full = false;
      curl_off_t have;
    } sink{f, &req, "", false, have};
    curl_easy_setopt(req.handle(), CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* u) -> size_t {
      auto* k = static_cast<Sink*>(u);
      long status = 0;
      curl_easy_getinfo(k->req->handle(), CURLINFO_RESPONSE_CODE, &status);
      if (status >= 400) {
        k->error_body.append(d, s * n);
        return s * n;
      }
      if (status == 200 && k->have > 0 && !k->truncated_for_full) {  // the server ignored Range: start over
        k->truncated_for_full = true;
        if (std::fflush(k->file) != 0 || ftruncate(fileno(k->file), 0) != 0) return 0;
        std::fseek(k->file, 0, SEEK_SET);
      }
      return on_file(d, s, n, k->file);
    });
    curl_easy_setopt(req.handle(), CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(req.handle(), CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(req.handle(), CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(req.handle(), CURLOPT_XFERINFODATA, &prog);
    CURLcode rc;
    try {
      rc = req.perform();
    } catch (...) {
      std::fclose(f);
      throw;
    }
    std::fclose(f);
    if (prog.live) std::fprintf(stderr, "\n");
    Response& r = req.response();
    if (r.status == 416 && have > 0) {  // our partial file is not a prefix the server knows: start over
      fs::remove(part);
      continue;
    }
    if (r.status >= 400) {
      r.body = sink.error_body;
      refuse(id, "file " + file, r, !token.empty());
    }
    const curl_off_t now = fs::exists(part, ec) ? static_cast<curl_off_t>(fs::file_size(part)) : 0;
    const bool complete = rc == CURLE_OK && (expected <= 0 || now == expected);
    if (complete) return;
    if (attempt >= options.retries) {
      fail_with(ENG_ERR_IO,
                "downloading {} of {} stopped at {} of {} bytes ({}); run the same command again to resume "
                "from {}",
                file, id.str(), now, expected, rc == CURLE_OK ? "the server closed the connection" : curl_easy_strerror(rc),
                part.string());
    }
    spdlog::warn("download of {} cut at {} bytes ({}); resuming", file, now,
                 rc == CURLE_OK ? "connection closed early" : curl_easy_strerror(rc));
  }
}

}  // namespace

bool hub_offline_from_env() {
  for (const char* name : {"HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"}) {
    const char* v = std::getenv(name);
    if (v == nullptr) continue;
    std::string s = lower(v);
    if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
  }
  return false;
}

std::string hub_endpoint() {
  const char* e = std::getenv("HF_ENDPOINT");
  std::string s = e != nullptr && *e != '\0' ? e : "https://huggingface.co";
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

bool matches_any(const std::string& file, const std::vector<std::string>& globs) {
  if (globs.empty()) return true;
  for (const std::string& g : globs) {
    if (fnmatch(g.c_str(), file.c_str(), 0) == 0) return true;
    // huggingface_hub treats a pattern ending in '/' as the folder's content
    if (!g.empty() && g.back() == '/' && fnmatch((g + "*").c_str(), file.c_str(), 0) == 0) return true;
  }
  return false;
}

std::string download_command(const HubId& id) {
  std::string cmd = "engine download " + id.repo;
  if (id.type == RepoType::kDataset) cmd += " --repo-type dataset";
  if (id.revision != "main") cmd += " --revision " + id.revision;
  return cmd;
}

RepoListing list_repo_files(const HubId& id, const std::string& endpoint_in) {
  const std::string endpoint = endpoint_in.empty() ? hub_endpoint() : endpoint_in;
  const std::string token = read_token();
  Request info(endpoint + "/api/" + repo_type_plural(id.type) + "/" + id.repo + "/revision/" + escape_path(id.revision),
               token);
  std::string body;
  curl_easy_setopt(info.handle(), CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(info.handle(), CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(info.handle(), CURLOPT_FOLLOWLOCATION, 1L);
  CURLcode rc = info.perform();
  if (rc != CURLE_OK) fail_with(ENG_ERR_IO, "asking the Hub about {}: {}", id.str(), curl_easy_strerror(rc));
  info.response().body = body;
  if (info.response().status != 200) refuse(id, "revision " + id.revision, info.response(), !token.empty());
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("sha") || !j["sha"].is_string() || !j.contains("siblings") ||
      !j["siblings"].is_array()) {
    fail_with(ENG_ERR_IO, "the Hub's answer about {} has no \"sha\" and \"siblings\" (is HF_ENDPOINT={} a Hub?)",
              id.str(), endpoint);
  }
  RepoListing out;
  out.commit = j["sha"].get<std::string>();
  if (!is_commit_hash(out.commit)) fail_with(ENG_ERR_IO, "the Hub gave {} as the commit of {}", out.commit, id.str());
  for (const json& s : j["siblings"]) {
    if (s.is_object() && s.contains("rfilename") && s["rfilename"].is_string())
      out.files.push_back(s["rfilename"].get<std::string>());
  }
  return out;
}

DownloadResult download_snapshot(const HubId& id, const DownloadOptions& options) {
  const std::string endpoint = options.endpoint.empty() ? hub_endpoint() : options.endpoint;
  const std::string token = read_token();

  // 1. The commit and the file list.
  RepoListing listing = list_repo_files(id, endpoint);
  DownloadResult out;
  out.commit = listing.commit;
  for (const std::string& f : listing.files) {
    if (matches_any(f, options.include)) out.files.push_back(f);
  }
  const fs::path repo = repo_folder(hf_hub_cache(), id);
  out.snapshot = repo / "snapshots" / out.commit;
  fs::create_directories(repo / "blobs");
  fs::create_directories(out.snapshot);
  write_ref(repo, id.revision, out.commit);

  // 2. Each file not yet in the snapshot.
  const std::string prefix = id.type == RepoType::kDataset ? "/datasets/" : "/";
  for (const std::string& file : out.files) {
    std::error_code ec;
    if (fs::exists(out.snapshot / file, ec)) continue;  // follows the symlink: present and complete
    const std::string url = endpoint + prefix + id.repo + "/resolve/" + out.commit + "/" + escape_path(file);
    Request head(url, token);
    curl_easy_setopt(head.handle(), CURLOPT_NOBODY, 1L);
    std::string head_body;
    curl_easy_setopt(head.handle(), CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(head.handle(), CURLOPT_WRITEDATA, &head_body);
    CURLcode rc = head.perform();
    if (rc != CURLE_OK) fail_with(ENG_ERR_IO, "asking the Hub about {} of {}: {}", file, id.str(), curl_easy_strerror(rc));
    Response& h = head.response();
    std::string location;
    // Relative redirects (a renamed repo) are followed for the metadata, as huggingface_hub does.
    for (int hops = 0; h.status >= 300 && h.status < 400 && hops < 5; ++hops) {
      location = h.header("location");
      if (location.empty() || location[0] != '/') break;
      curl_easy_setopt(head.handle(), CURLOPT_URL, (endpoint + location).c_str());
      rc = head.perform();
      if (rc != CURLE_OK) fail_with(ENG_ERR_IO, "asking the Hub about {}: {}", file, curl_easy_strerror(rc));
    }
    if (h.status >= 400) refuse(id, "file " + file, h, !token.empty());
    std::string etag = normalize_etag(h.header("x-linked-etag"));
    if (etag.empty()) etag = normalize_etag(h.header("etag"));
    if (etag.empty())
      fail_with(ENG_ERR_IO, "the Hub sent no ETag for {} of {}; cannot place it in the cache", file, id.str());
    std::string size_text = h.header("x-linked-size");
    if (size_text.empty()) size_text = h.header("content-length");
    curl_off_t expected = size_text.empty() ? 0 : std::strtoll(size_text.c_str(), nullptr, 10);
    const std::string commit = h.header("x-repo-commit");
    if (!commit.empty() && commit != out.commit)
      fail_with(ENG_ERR_IO, "the Hub answered {} for {} at commit {}, not {}", file, id.str(), commit, out.commit);
    // An absolute Location (the LFS store) is fetched directly; the token goes only to the endpoint.
    const bool elsewhere = h.status >= 300 && h.status < 400 && !location.empty() && location[0] != '/';
    if (!elsewhere) location = url;
    const std::string blob_token = location.rfind(endpoint + "/", 0) == 0 ? token : std::string();
    const fs::path blob = repo / "blobs" / etag;
    BlobLock lock(hf_hub_cache(), repo, etag);
    if (!fs::exists(blob, ec)) {
      const fs::path part = blob.string() + ".incomplete";
      const std::string label = fmt::format("{} {}", id.repo, file);
      fetch_blob(location, blob_token, part, expected, label, options, id, file);
      if (is_sha256(etag)) {
        std::string got = sha256_of(part);
        if (got != etag) {
          fs::remove(part);
          fail_with(ENG_ERR_IO,
                    "{} of {} is corrupted: its SHA-256 is {} but the Hub's ETag says {}; the partial file was "
                    "deleted, run the download again",
                    file, id.str(), got, etag);
        }
      }
      fs::rename(part, blob);
      spdlog::info("downloaded {} {} ({})", id.repo, file, human_bytes(static_cast<double>(fs::file_size(blob))));
    }
    link_snapshot_file(repo, out.commit, file, etag);
    ++out.fetched;
  }
  return out;
}

}  // namespace engine::hub
