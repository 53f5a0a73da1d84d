// `engine tokenize`: the CLI face of engine::data::run_tokenize_command (stdin -> ids, or ids -> text).
#include <iostream>

#include "engine/cli/command.hpp"
#include "engine/data/tokenize_command.hpp"

namespace engine::cli {

int tokenize_command(const std::vector<std::string>& args) {
  return data::run_tokenize_command(args, std::cin, std::cout, std::cerr);
}

}  // namespace engine::cli
