#include "engine/cli/tokenize_command.hpp"

#include <iostream>
#include <istream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <ostream>

#include "engine/cli/command.hpp"
#include "engine/core/error.hpp"
#include "engine/data/tokenizer.hpp"

namespace engine::cli {
namespace {

constexpr const char* kUsage =
    "usage: engine tokenize --tokenizer PATH [--add-special-tokens] [--jsonl] [--decode]\n"
    "  PATH                  a tokenizer.json or a model directory containing one\n"
    "  --add-special-tokens  add the tokenizer's post-processor tokens (e.g. Llama 3's <|begin_of_text|>)\n"
    "  --jsonl               one JSON string per input line, one JSON array of ids per output line\n"
    "  --decode              the reverse: JSON arrays of ids in, text out\n"
    "Reads stdin, writes stdout.\n";

std::vector<int32_t> parse_ids(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: expected a JSON array of token ids: {}", where, e.what());
  }
  if (!j.is_array()) fail("{}: expected a JSON array of token ids", where);
  std::vector<int32_t> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer()) fail("{}: token ids must be integers, got {}", where, v.dump());
    ids.push_back(v.get<int32_t>());
  }
  return ids;
}

}  // namespace

int run_tokenize_command(const std::vector<std::string>& args, std::istream& in, std::ostream& out,
                         std::ostream& err) {
  std::string path;
  bool add_special = false, jsonl = false, decode = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--tokenizer" && i + 1 < args.size()) {
      path = args[++i];
    } else if (a.rfind("--tokenizer=", 0) == 0) {
      path = a.substr(12);
    } else if (a == "--add-special-tokens") {
      add_special = true;
    } else if (a == "--jsonl") {
      jsonl = true;
    } else if (a == "--decode") {
      decode = true;
    } else if (a == "--help" || a == "-h") {
      out << kUsage;
      return 0;
    } else {
      err << "engine tokenize: unknown or incomplete argument \"" << a << "\"\n" << kUsage;
      return 2;
    }
  }
  if (path.empty()) {
    err << "engine tokenize: --tokenizer PATH is required\n" << kUsage;
    return 2;
  }
  try {
    const data::Tokenizer tokenizer = data::Tokenizer::from_file(path);
    if (!jsonl) {
      const std::string input((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (decode) {
        out << tokenizer.decode(parse_ids(input, "stdin"));
      } else {
        out << nlohmann::json(tokenizer.encode(input, add_special)).dump() << "\n";
      }
      return 0;
    }
    std::string line;
    size_t line_number = 0;
    while (std::getline(in, line)) {
      ++line_number;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      const std::string where = "stdin:" + std::to_string(line_number);
      if (decode) {
        out << nlohmann::json(tokenizer.decode(parse_ids(line, where))).dump() << "\n";
        continue;
      }
      nlohmann::json value;
      try {
        value = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail("{}: expected a JSON string per line (--jsonl): {}", where, e.what());
      }
      if (!value.is_string())
        fail("{}: expected a JSON string per line (--jsonl), got {}", where, value.type_name());
      out << nlohmann::json(tokenizer.encode(value.get<std::string>(), add_special)).dump() << "\n";
    }
    return 0;
  } catch (const Error& e) {
    err << "engine tokenize: " << e.what() << "\n";
    return 1;
  }
}

int tokenize_command(const std::vector<std::string>& args) {
  return run_tokenize_command(args, std::cin, std::cout, std::cerr);
}

}  // namespace engine::cli
