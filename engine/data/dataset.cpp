#include "engine/data/dataset.hpp"

#include <spdlog/spdlog.h>

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/core/error.hpp"

namespace engine::data {
namespace {

constexpr size_t kKeptErrors = 20;

const nlohmann::json* find_field(const nlohmann::json& record, const std::string& name) {
  const auto it = record.find(name);
  return it == record.end() || it->is_null() ? nullptr : &*it;
}

std::string string_field(const nlohmann::json& record, const std::string& name, const std::string& where,
                         const char* form, bool required) {
  const nlohmann::json* value = find_field(record, name);
  if (value == nullptr) {
    if (required) fail("{}: no \"{}\" field ({} form; map other names with data.fields)", where, name, form);
    return {};
  }
  if (!value->is_string()) fail("{}: field \"{}\" must be a string", where, name);
  return value->get<std::string>();
}

Example parse_alpaca(const nlohmann::json& record, const DatasetFields& f, const std::string& where) {
  Example ex;
  ex.where = where;
  const std::string system = string_field(record, f.system, where, "alpaca", false);
  std::string user = string_field(record, f.instruction, where, "alpaca", true);
  const std::string input = string_field(record, f.input, where, "alpaca", false);
  const std::string output = string_field(record, f.output, where, "alpaca", true);
  if (!input.empty()) user += "\n\n" + input;
  if (!system.empty()) ex.messages.push_back({"system", system});
  ex.messages.push_back({"user", std::move(user)});
  ex.messages.push_back({"assistant", output});
  return ex;
}

Example parse_messages(const nlohmann::json& record, const DatasetFields& f, const std::string& where) {
  const nlohmann::json* list = find_field(record, f.messages);
  std::string list_name = f.messages;
  if (list == nullptr && f.messages == "messages") {
    list = find_field(record, "conversations");
    list_name = "conversations";
  }
  if (list == nullptr || !list->is_array() || list->empty()) {
    fail("{}: \"{}\" must be a non-empty array of messages", where, list_name);
  }
  Example ex;
  ex.where = where;
  bool has_assistant = false;
  for (size_t k = 0; k < list->size(); ++k) {
    const auto& m = (*list)[k];
    if (!m.is_object()) fail("{}: message {}: expected a JSON object, got {}", where, k, m.type_name());
    const bool sharegpt = !m.contains(f.role) && m.contains("from");
    const std::string role_key = sharegpt ? "from" : f.role;
    const std::string content_key = !m.contains(f.content) && m.contains("value") ? "value" : f.content;
    const auto role_it = m.find(role_key), content_it = m.find(content_key);
    if (role_it == m.end() || !role_it->is_string())
      fail("{}: message {}: no string \"{}\" field", where, k, role_key);
    if (content_it == m.end() || !content_it->is_string()) {
      fail("{}: message {}: no string \"{}\" field", where, k, content_key);
    }
    std::string role = role_it->get<std::string>();
    if (role == "human") role = "user";
    if (role == "gpt") role = "assistant";
    if (role != "system" && role != "user" && role != "assistant") {
      fail("{}: message {}: role \"{}\" is not one of system, user, assistant (ShareGPT: human, gpt)", where,
           k, role_it->get<std::string>());
    }
    has_assistant = has_assistant || role == "assistant";
    ex.messages.push_back({std::move(role), content_it->get<std::string>()});
  }
  if (!has_assistant) fail("{}: no assistant message to train on", where);
  return ex;
}

// Start offsets of the top-level elements of a JSON array (strings and nesting skipped). Throws when the
// text is not an array; a malformed element is left for the element's own parse to report.
std::vector<std::pair<size_t, size_t>> array_elements(const std::string& text, const std::string& file) {
  std::vector<std::pair<size_t, size_t>> spans;
  size_t pos = text.find_first_not_of(" \t\r\n\xEF\xBB\xBF");
  if (pos == std::string::npos || text[pos] != '[') fail("{}: expected a JSON array of records", file);
  int depth = 0;
  bool in_string = false;
  size_t element_start = std::string::npos;
  for (size_t i = pos + 1; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (element_start == std::string::npos && c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != ',' &&
        !(depth == 0 && c == ']')) {
      element_start = i;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth == 0) {  // the closing bracket of the array
        if (element_start != std::string::npos) spans.emplace_back(element_start, i);
        return spans;
      }
      --depth;
    } else if (c == ',' && depth == 0) {
      if (element_start != std::string::npos) spans.emplace_back(element_start, i);
      element_start = std::string::npos;
    }
  }
  fail("{}: the JSON array is not closed (missing ']')", file);
}

}  // namespace

DatasetFormat parse_dataset_format(const std::string& name) {
  if (name == "auto") return DatasetFormat::kAuto;
  if (name == "alpaca") return DatasetFormat::kAlpaca;
  if (name == "messages" || name == "sharegpt") return DatasetFormat::kMessages;
  if (name == "text") return DatasetFormat::kText;
  if (name == "tokens") return DatasetFormat::kTokens;
  fail("data.format = \"{}\" is unknown (known: auto, alpaca, messages, sharegpt, text, tokens)", name);
}

OnError parse_on_error(const std::string& name) {
  if (name == "skip") return OnError::kSkip;
  if (name == "fail") return OnError::kFail;
  fail("data.on_error = \"{}\" is unknown (known: skip, fail)", name);
}

Example parse_record(const std::string& json_text, const DatasetOptions& options, const std::string& where) {
  nlohmann::json record;
  try {
    record = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
    std::string what = e.what();
    if (const size_t p = what.find("parse error"); p != std::string::npos) what = what.substr(p);
    fail("{}: not valid JSON: {}", where, what);
  }
  if (!record.is_object()) fail("{}: expected a JSON object, got {}", where, record.type_name());
  const DatasetFields& f = options.fields;
  switch (options.format) {
    case DatasetFormat::kAlpaca:
      return parse_alpaca(record, f, where);
    case DatasetFormat::kMessages:
      return parse_messages(record, f, where);
    case DatasetFormat::kText: {
      Example ex;
      ex.is_text = true;
      ex.where = where;
      ex.text = string_field(record, f.text, where, "text", true);
      return ex;
    }
    case DatasetFormat::kTokens: {
      Example ex;
      ex.is_tokens = true;
      ex.where = where;
      const auto it = record.find("input_ids");
      if (it == record.end() || !it->is_array() || it->empty())
        fail("{}: a tokens record needs \"input_ids\": a non-empty array of token ids", where);
      ex.ids.reserve(it->size());
      for (const auto& v : *it) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
          fail("{}: input_ids holds {}, not a token id (an integer from 0 to 2147483647)", where, v.dump());
        ex.ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
      }
      return ex;
    }
    case DatasetFormat::kAuto:
      break;
  }
  if (record.contains("input_ids")) {
    DatasetOptions tokens = options;
    tokens.format = DatasetFormat::kTokens;
    return parse_record(json_text, tokens, where);
  }
  if (record.contains(f.messages) || record.contains("conversations"))
    return parse_messages(record, f, where);
  if (record.contains(f.instruction) || record.contains(f.output)) return parse_alpaca(record, f, where);
  if (record.contains(f.text)) {
    DatasetOptions text = options;
    text.format = DatasetFormat::kText;
    return parse_record(json_text, text, where);
  }
  fail("{}: record matches no known form (alpaca: instruction/output; messages; text; tokens: input_ids)", where);
}

Dataset read_dataset(const std::filesystem::path& path, const DatasetOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_with(ENG_ERR_IO, "cannot open dataset {}: check data.train / data.eval", path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  const std::string file = path.string();
  Dataset out;
  const auto handle = [&](const std::string& record, size_t line) {
    const std::string where = file + ":" + std::to_string(line);
    try {
      out.examples.push_back(parse_record(record, options, where));
    } catch (const Error& e) {
      if (options.on_error == OnError::kFail) fail_with(e.status(), "{}{}", e.what(), kOnErrorFailHint);
      ++out.skipped;
      if (out.errors.size() < kKeptErrors) {
        spdlog::warn("skipping record: {}", e.what());
        out.errors.push_back(e.what());
      }
    }
  };
  const size_t first = text.find_first_not_of(" \t\r\n\xEF\xBB\xBF");
  if (first != std::string::npos && text[first] == '[') {
    size_t line = 1, counted = 0;
    for (const auto& [start, end] : array_elements(text, file)) {
      for (; counted < start; ++counted) line += text[counted] == '\n';
      handle(text.substr(start, end - start), line);
    }
  } else {
    size_t line = 0, pos = text.starts_with("\xEF\xBB\xBF") ? 3 : 0;  // skip a UTF-8 byte order mark
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      ++line;
      std::string_view record(text.data() + pos, end - pos);
      pos = end + 1;
      if (!record.empty() && record.back() == '\r') record.remove_suffix(1);
      if (record.find_first_not_of(" \t") == std::string_view::npos) continue;  // blank line
      handle(std::string(record), line);
    }
  }
  if (out.skipped > 0) {
    spdlog::warn("{}: skipped {} malformed record(s) of {} (data.on_error = \"skip\")", file, out.skipped,
                 out.skipped + out.examples.size());
  }
  return out;
}

}  // namespace engine::data
