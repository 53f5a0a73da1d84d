// `engine tokenize`: the command's logic on given streams (tokenize_command in command.hpp runs it on
// stdin/stdout/stderr), so it can be tested with string streams.
//   engine tokenize --tokenizer PATH [--add-special-tokens] [--jsonl] [--decode]
// PATH is a tokenizer.json or a model directory. Reads UTF-8 text on `in` and prints its ids as one JSON
// array. --jsonl: each input line is a JSON string, each output line the JSON array of its ids. --decode
// reverses: reads a JSON array of ids (with --jsonl, one per line) and prints the text (with --jsonl, one
// JSON string per line). Returns the exit code: 0 success, 1 a failure (message on `err`), 2 a usage error.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace engine::cli {

int run_tokenize_command(const std::vector<std::string>& args, std::istream& in, std::ostream& out,
                         std::ostream& err);

}  // namespace engine::cli
