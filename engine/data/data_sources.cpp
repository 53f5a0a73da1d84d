#include "engine/data/data_sources.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/core/error.hpp"
#include "engine/core/splitmix64.hpp"

namespace engine::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string lower_ext(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return e;
}

std::string read_all(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail_with(ENG_ERR_IO, "cannot open dataset {}: check data.train / data.eval", file.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A seeded stream of 64-bit numbers (splitmix64 of a counter).
struct Stream {
  uint64_t state;
  uint64_t next() { return splitmix64(state++ * 0x9E3779B97F4A7C15ull); }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

std::vector<size_t> permutation(size_t n, Stream& s) {
  std::vector<size_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = i;
  for (size_t i = n; i > 1; --i) std::swap(p[i - 1], p[s.below(i)]);
  return p;
}

}  // namespace

DataSource parse_data_source(const std::string& text) {
  DataSource s;
  s.name = text;
  std::error_code ec;
  const size_t hash = text.rfind('#');
  if (hash == std::string::npos || fs::exists(text, ec)) {
    s.path = text;
    return s;
  }
  const std::string n = text.substr(hash + 1);
  if (n.empty() || n.size() > 12 || n.find_first_not_of("0123456789") != std::string::npos || std::stoll(n) <= 0)
    fail("data source {}: '#' must be followed by a positive number of samples (e.g. {}#500)", text,
         text.substr(0, hash));
  s.path = text.substr(0, hash);
  s.count = std::stoll(n);
  return s;
}

void check_readable_format(const fs::path& file, const std::string& what) {
  const std::string ext = lower_ext(file);
  if (ext == ".parquet" || ext == ".arrow") {
    fail("{}: {} is {}, which the engine does not read; convert it to JSONL, e.g. python3 -c \"import pandas as "
         "pd; pd.read_parquet('{}').to_json('{}', orient='records', lines=True, force_ascii=False)\" (pandas "
         "with pyarrow), and name the .jsonl file instead",
         what, file.string(), ext == ".parquet" ? "Parquet" : "Arrow", file.string(),
         file.stem().string() + ".jsonl");
  }
}

bool is_data_file(const fs::path& file) {
  const std::string ext = lower_ext(file);
  const std::string name = file.filename().string();
  return (ext == ".json" || ext == ".jsonl" || ext == ".csv") && name != "dataset_info.json" &&
         name != "dataset_infos.json" && name != "state.json" && name != "dataset_dict.json";
}

fs::path dataset_file_in(const fs::path& folder, const std::string& role, const std::string& what) {
  std::vector<fs::path> data, parquet;
  try {  // a folder it may not read throws (links are followed: the Hub cache links its files)
    std::set<fs::path> seen;  // a folder reached again through a link (a loop) is not listed again
    std::error_code ec;
    seen.insert(fs::canonical(folder, ec));
    for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::follow_directory_symlink);
         it != fs::recursive_directory_iterator(); ++it) {
      const fs::directory_entry& e = *it;
      if (e.is_directory(ec)) {
        if (!seen.insert(fs::canonical(e.path(), ec)).second) it.disable_recursion_pending();
        continue;
      }
      if (!fs::is_regular_file(e.path(), ec)) continue;  // follows the cache's symlinks
      const std::string rel = e.path().lexically_relative(folder).string();
      if (rel.rfind('.', 0) == 0) continue;  // .gitattributes, .cache/
      if (lower_ext(e.path()) == ".parquet") parquet.push_back(e.path());
      if (is_data_file(e.path())) data.push_back(e.path());
    }
  } catch (const fs::filesystem_error& e) {
    fail("{}: cannot list the data folder {}: {} at {}; fix its permissions or links, or name the data file", what,
         folder.string(), e.code().message(), e.path1().string());
  }
  std::sort(data.begin(), data.end());
  if (data.empty() && !parquet.empty()) check_readable_format(parquet.front(), what);
  if (data.empty()) fail("{}: {} holds no JSON, JSONL or CSV data file", what, folder.string());
  if (data.size() == 1) return data.front();
  std::vector<fs::path> named;
  for (const fs::path& p : data) {
    if (p.filename().string().find(role) != std::string::npos) named.push_back(p);
  }
  if (named.size() == 1) return named.front();
  std::string list;
  for (size_t i = 0; i < data.size() && i < 10; ++i)
    list += (list.empty() ? "" : ", ") + data[i].lexically_relative(folder).string();
  if (data.size() > 10) list += fmt::format(" and {} more", data.size() - 10);
  fail("{}: {} holds several data files ({}); name the one to use by its path (or list several as sources)", what,
       folder.string(), list);
}

std::vector<std::string> read_csv_records(const fs::path& file) {
  const std::string text = read_all(file);
  size_t i = text.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  std::vector<std::vector<std::string>> rows;
  std::vector<size_t> row_lines;
  std::vector<std::string> row;
  std::string field;
  size_t line = 1, row_line = 1;
  bool quoted = false, field_started = false;
  auto end_field = [&] {
    row.push_back(field);
    field.clear();
    field_started = false;
  };
  auto end_row = [&] {
    end_field();
    if (!(row.size() == 1 && row[0].empty())) {
      rows.push_back(row);
      row_lines.push_back(row_line);
    }
    row.clear();
    row_line = line;
  };
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (c == '"' && !field_started) {
      quoted = field_started = true;
    } else if (c == ',') {
      end_field();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++line;
      end_row();
    } else if (c == '"') {
      fail("{}:{}: a '\"' inside an unquoted field (quote the field and double the '\"')", file.string(), line);
    } else {
      field += c;
      field_started = true;
    }
  }
  if (quoted) fail("{}:{}: a quoted field is not closed before the end of the file", file.string(), row_line);
  if (field_started || !row.empty()) end_row();
  if (rows.empty()) return {};
  const std::vector<std::string>& header = rows[0];
  std::vector<std::string> out;
  for (size_t r = 1; r < rows.size(); ++r) {
    if (rows[r].size() != header.size())
      fail("{}:{}: {} fields, but the header has {} ({})", file.string(), row_lines[r], rows[r].size(),
           header.size(), file.filename().string());
    json o = json::object();
    for (size_t k = 0; k < header.size(); ++k) o[header[k]] = rows[r][k];
    out.push_back(o.dump());
  }
  return out;
}

std::vector<std::string> read_record_texts(const fs::path& file) {
  check_readable_format(file, "data source");
  if (lower_ext(file) == ".csv") return read_csv_records(file);
  const std::string text = read_all(file);
  const size_t first = text.find_first_not_of(" \t\r\n\xEF\xBB\xBF");
  std::vector<std::string> out;
  if (first != std::string::npos && text[first] == '[') {
    json arr = json::parse(text, nullptr, false);
    if (!arr.is_array()) fail("{}: starts with '[' but is not a valid JSON array", file.string());
    for (const json& r : arr) out.push_back(r.dump());
    return out;
  }
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) out.push_back(line);
  }
  return out;
}

std::vector<size_t> sample_indices(size_t size, int64_t count, uint64_t seed) {
  std::vector<size_t> out;
  if (count < 0) {
    out.resize(size);
    for (size_t i = 0; i < size; ++i) out[i] = i;
    return out;
  }
  if (size == 0) return out;
  Stream s{seed};
  const size_t n = static_cast<size_t>(count);
  for (size_t k = 0; k < n / size; ++k) {  // whole repeats first, in order (as ms-swift's sample_dataset)
    for (size_t i = 0; i < size; ++i) out.push_back(i);
  }
  std::vector<size_t> p = permutation(size, s);
  p.resize(n % size);
  out.insert(out.end(), p.begin(), p.end());
  return out;
}

fs::path materialise_sources(const std::vector<DataSource>& sources, uint64_t seed, const fs::path& cache_dir) {
  if (sources.empty()) fail("no data source given");
  for (const DataSource& s : sources) check_readable_format(s.path, "data source " + s.name);
  const std::string ext0 = lower_ext(sources[0].path);
  if (sources.size() == 1 && sources[0].count < 0 && sources[0].weight <= 0 && (ext0 == ".json" || ext0 == ".jsonl"))
    return sources[0].path;
  std::string out;
  std::string summary;
  for (size_t k = 0; k < sources.size(); ++k) {
    const DataSource& s = sources[k];
    std::vector<std::string> records = read_record_texts(s.path);
    int64_t count = s.count;
    if (count < 0 && s.weight > 0)
      count = static_cast<int64_t>(std::llround(s.weight * static_cast<double>(records.size())));
    if (count > 0 && records.empty()) fail("data source {} has no records to sample {} from", s.name, count);
    std::vector<size_t> idx = sample_indices(records.size(), count, seed + k);
    for (size_t i : idx) out += records[i] + "\n";
    summary += fmt::format("{}{} ({} of {} records)", summary.empty() ? "" : ", ", s.name, idx.size(), records.size());
  }
  const std::string key = fmt::format("{:016x}", std::hash<std::string>{}(out));
  fs::create_directories(cache_dir);
  const fs::path file = cache_dir / ("mixture-" + key + ".jsonl");
  if (!fs::exists(file)) {
    const fs::path tmp = file.string() + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      f << out;
      if (!f) fail_with(ENG_ERR_IO, "cannot write {}", tmp.string());
    }
    fs::rename(tmp, file);
  }
  spdlog::info("data: {} -> {}", summary, file.string());
  return file;
}

}  // namespace engine::data
