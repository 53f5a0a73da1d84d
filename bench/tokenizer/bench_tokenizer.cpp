// Tokenizer throughput: encodes a deterministic multilingual corpus (documents of 1-4 paragraphs drawn with
// a seeded splitmix64 from multilingual_samples.txt: prose in 12 languages, code, JSON, emoji, numbers)
// with engine::data::Tokenizer on one thread and on all threads, and reports MB/s of UTF-8 input.
// The text repeats a small set of paragraphs, so word caches are hot (for the peer too); the first pass on a
// fresh tokenizer is reported separately as "cold cache".
//   bench_tokenizer [--tokenizer PATH] [--mb 16] [--threads N] [--repeat 3] [--write-docs FILE] [--json FILE]
//                   [--docs FILE] [--ids-out FILE]
// --docs reads the documents (a JSON array of strings) instead of generating them; --ids-out writes each
// document's ids and their decoded text as one JSON line {"ids", "text"} (for checking against the Python
// package).
//                   [--docs FILE] [--ids-out FILE]
// --docs reads the documents (a JSON array of strings) instead of generating them; --ids-out writes each
// document's ids and their decoded text as one JSON line {"ids", "text"} (for checking against the Python
// package).
// compare_tokenizers.py runs this and the Python `tokenizers` package on the same documents and checks that
// the ids agree (ids_hash).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/core/splitmix64.hpp"
#include "engine/data/tokenizer.hpp"

namespace {

// The SplitMix64 stream over engine/core/splitmix64.hpp.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    const uint64_t z = engine::splitmix64(state);
    state += 0x9E3779B97F4A7C15ull;  // the state advances by splitmix64's increment
    return z;
  }
};

std::vector<std::string> read_paragraphs(const std::string& path) {
  std::ifstream in(path);
  if (!in) engine::fail("cannot open {}", path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::string p;  // "\n" and "\t" written as escapes in the file become real characters
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && (line[i + 1] == 'n' || line[i + 1] == 't')) {
        p.push_back(line[i + 1] == 'n' ? '\n' : '\t');
        ++i;
      } else {
        p.push_back(line[i]);
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<std::string> make_documents(const std::vector<std::string>& paragraphs, size_t target_bytes) {
  SplitMix64 rng{20241123};
  std::vector<std::string> docs;
  size_t total = 0;
  while (total < target_bytes) {
    std::string doc;
    const size_t count = 1 + rng.next() % 4;
    for (size_t k = 0; k < count; ++k) {
      if (k > 0) doc += (rng.next() % 3 == 0) ? "\n\n\n    " : "\n\n";
      doc += paragraphs[rng.next() % paragraphs.size()];
    }
    total += doc.size();
    docs.push_back(std::move(doc));
  }
  return docs;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer_path = ENGINE_BENCH_DEFAULT_TOKENIZER, samples = ENGINE_BENCH_SAMPLES, docs_out,
              json_out, docs_in, ids_out;
  double mb = 16;
  size_t threads = std::max(1u, std::thread::hardware_concurrency());
  int repeat = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--tokenizer")
      tokenizer_path = value();
    else if (a == "--samples")
      samples = value();
    else if (a == "--mb")
      mb = std::stod(value());
    else if (a == "--threads")
      threads = std::stoul(value());
    else if (a == "--repeat")
      repeat = std::stoi(value());
    else if (a == "--write-docs")
      docs_out = value();
    else if (a == "--json")
      json_out = value();
    else if (a == "--docs")
      docs_in = value();
    else if (a == "--ids-out")
      ids_out = value();
    else {
      std::cerr << "usage: bench_tokenizer [--tokenizer PATH] [--samples FILE] [--mb 16] [--threads N] "
                   "[--repeat 3] [--write-docs FILE] [--json FILE] [--docs FILE] [--ids-out FILE]\n";
      return 2;
    }
  }
  try {
    const auto load_start = std::chrono::steady_clock::now();
    const engine::data::Tokenizer tok = engine::data::Tokenizer::from_file(tokenizer_path);
    const double load_s = seconds_since(load_start);
    std::vector<std::string> docs;
    if (docs_in.empty()) {
      docs = make_documents(read_paragraphs(samples), static_cast<size_t>(mb * 1e6));
    } else {
      std::ifstream in(docs_in);
      if (!in) engine::fail("cannot open {}", docs_in);
      docs = nlohmann::json::parse(in).get<std::vector<std::string>>();
    }
    if (!ids_out.empty()) {
      std::ofstream out(ids_out);
      for (const auto& d : docs) {
        const auto ids = tok.encode(d);
        out << nlohmann::json{{"ids", ids}, {"text", tok.decode(ids)}}.dump() << "\n";
      }
    }
    size_t bytes = 0;
    for (const auto& d : docs) bytes += d.size();
    if (!docs_out.empty()) std::ofstream(docs_out) << nlohmann::json(docs).dump();

    // Single thread; the first pass warms the word cache (not timed), as a long run would be.
    uint64_t tokens = 0, hash = 0;
    const auto cold_start = std::chrono::steady_clock::now();
    for (const auto& d : docs) {
      for (int32_t id : tok.encode(d)) {
        hash = hash * 1000003ull + static_cast<uint64_t>(id);
        ++tokens;
      }
    }
    const double cold = seconds_since(cold_start);  // includes hashing the ids (negligible next to encoding)
    double single = 1e30;
    for (int r = 0; r < repeat; ++r) {
      const auto start = std::chrono::steady_clock::now();
      size_t sink = 0;
      for (const auto& d : docs) sink += tok.encode(d).size();
      single = std::min(single, seconds_since(start));
      if (sink != tokens) engine::fail("token count changed between passes ({} vs {})", sink, tokens);
    }
    double parallel = 1e30;
    for (int r = 0; r < repeat; ++r) {
      std::atomic<size_t> next{0}, sink{0};
      const auto start = std::chrono::steady_clock::now();
      std::vector<std::thread> pool;
      for (size_t t = 0; t < threads; ++t) {
        pool.emplace_back([&] {
          size_t local = 0;
          for (size_t i; (i = next.fetch_add(16)) < docs.size();) {
            for (size_t k = i; k < std::min(i + 16, docs.size()); ++k) local += tok.encode(docs[k]).size();
          }
          sink += local;
        });
      }
      for (auto& th : pool) th.join();
      parallel = std::min(parallel, seconds_since(start));
      if (sink != tokens) engine::fail("token count changed in the threaded pass");
    }
    const double single_mb = bytes / 1e6 / single, parallel_mb = bytes / 1e6 / parallel,
                 cold_mb = bytes / 1e6 / cold;
    std::printf("%-34s %10s %12s %12s\n", "tokenizer (engine, C++)", "threads", "MB/s", "Mtok/s");
    std::printf("%-34s %10d %12.2f %12.2f\n", "engine::data::Tokenizer (cold cache)", 1, cold_mb,
                tokens / 1e6 / cold);
    std::printf("%-34s %10d %12.2f %12.2f\n", "engine::data::Tokenizer", 1, single_mb, tokens / 1e6 / single);
    std::printf("%-34s %10zu %12.2f %12.2f\n", "engine::data::Tokenizer", threads, parallel_mb,
                tokens / 1e6 / parallel);
    std::printf("text: %zu documents, %.2f MB, %llu tokens; tokenizer loaded in %.2f s\n", docs.size(),
                bytes / 1e6, static_cast<unsigned long long>(tokens), load_s);
    if (!json_out.empty()) {
      const nlohmann::json j = {{"tokenizer", tokenizer_path},
                                {"documents", docs.size()},
                                {"bytes", bytes},
                                {"tokens", tokens},
                                {"ids_hash", hash},
                                {"threads", threads},
                                {"single_thread_mb_s", single_mb},
                                {"single_thread_cold_mb_s", cold_mb},
                                {"all_threads_mb_s", parallel_mb},
                                {"load_s", load_s}};
      std::ofstream(json_out) << j.dump(2) << "\n";
    }
    return 0;
  } catch (const engine::Error& e) {
    std::cerr << "bench_tokenizer: " << e.what() << "\n";
    return 1;
  }
}
