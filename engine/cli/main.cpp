// engine: the command-line entry. Global options (--version, --help, --log-level LEVEL) then a subcommand
// from command_table.cpp. Exit codes: 0 ok, 1 runtime failure, 2 usage or validation errors.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/cli/command.hpp"
#include "engine/core/error.hpp"
#include "engine/plugins/spelling.hpp"

namespace {

void print_help() {
  std::cout << "engine " << ENGINE_VERSION << ": LLM fine-tuning with ABI-stable plugins\n\n"
            << "usage: engine [--log-level trace|debug|info|warn|error] [--allow-insecure-plugins] <command> [args]\n\ncommands:\n";
  for (const engine::cli::Command& c : engine::cli::commands()) {
    std::cout << "  " << c.usage << "\n      " << c.summary << "\n";
  }
  std::cout
      << "\n  --version    print the engine and plugin ABI versions\n"
      << "plugins are found on ENGINE_PLUGIN_PATH (colon-separated) and in <prefix>/lib/engine/plugins\n"
      << "  --allow-insecure-plugins    load plugin files that other users can write (refused by default)\n";
}

// "cannot create directories /x/y: Permission denied; check that path and its permissions" from libstdc++'s
// "filesystem error: cannot create directories: Permission denied [/x/y]".
std::string describe_filesystem_error(const std::filesystem::filesystem_error& e) {
  std::string op = e.what();
  if (op.rfind("filesystem error: ", 0) == 0) op = op.substr(18);
  if (const size_t colon = op.find(':'); colon != std::string::npos) op = op.substr(0, colon);
  std::string paths = e.path1().string();
  if (!e.path2().empty()) paths += " -> " + e.path2().string();
  return op + (paths.empty() ? "" : " " + paths) + ": " + e.code().message() +
         "; check that path (does it exist, may you read it, and for outputs write to it, is the disk full?)";
}

}  // namespace

int main(int argc, char** argv) {
  // Logs go to stderr so that stdout carries only a command's output (`engine plugins --json`).
  spdlog::set_default_logger(spdlog::stderr_color_mt("engine"));
  spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_level(spdlog::level::info);
  std::vector<std::string> args(argv + 1, argv + argc);

  // --log-level may appear anywhere.
  for (size_t i = 0; i < args.size(); ++i) {
    std::string level;
    if (args[i] == "--log-level" && i + 1 == args.size()) {
      std::cerr << "engine: --log-level needs a level (trace, debug, info, warn, error, off)\n";
      return engine::cli::kExitUsage;
    }
    if (args[i] == "--log-level") {
      level = args[i + 1];
      args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
    } else if (args[i].rfind("--log-level=", 0) == 0) {
      level = args[i].substr(12);
      args.erase(args.begin() + static_cast<long>(i));
    } else {
      continue;
    }
    spdlog::level::level_enum l = spdlog::level::from_str(level);
    if (l == spdlog::level::off && level != "off") {
      std::cerr << "engine: unknown log level '" << level << "' (trace, debug, info, warn, error, off)\n";
      return engine::cli::kExitUsage;
    }
    spdlog::set_level(l);
    --i;
  }

  // --allow-insecure-plugins may appear anywhere; the environment carries it to worker processes too.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] != "--allow-insecure-plugins") continue;
    ::setenv(engine::cli::kAllowInsecurePluginsEnv, "1", 1);
    args.erase(args.begin() + static_cast<long>(i));
    --i;
  }

  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_help();
    return args.empty() ? engine::cli::kExitUsage : engine::cli::kExitOk;
  }
  if (args[0] == "--version") {
    std::cout << "engine " << ENGINE_VERSION << "\nplugin ABI " << ENG_ABI_VERSION_MAJOR << "."
              << ENG_ABI_VERSION_MINOR << "\n";
    return engine::cli::kExitOk;
  }
  for (const engine::cli::Command& c : engine::cli::commands()) {
    if (args[0] != c.name) continue;
    std::vector<std::string> rest(args.begin() + 1, args.end());
    try {
      return c.run(rest);
    } catch (const engine::cli::UsageError& e) {
      std::cerr << "engine " << c.name << ": " << e.what() << "\nusage: engine " << c.usage << "\n";
      return engine::cli::kExitUsage;
    } catch (const std::bad_alloc&) {
      std::cerr << "engine " << c.name
                << ": out of memory (an allocation failed); lower train.micro_batch_size or data.max_seq_len "
                   "(engine plan RECIPE shows what a run needs), or free memory on this machine\n";
      return engine::cli::kExitRuntime;
    } catch (const std::filesystem::filesystem_error& e) {
      // A file or folder the engine reads or writes that the system refused (permissions, a symlink loop, a
      // full disk) where no caller named its key: the path and the reason, without the library's wording.
      std::cerr << "engine " << c.name << ": " << describe_filesystem_error(e) << "\n";
      return engine::cli::kExitRuntime;
    } catch (const std::exception& e) {
      std::cerr << "engine " << c.name << ": " << e.what() << "\n";
      return engine::cli::kExitRuntime;
    }
  }
  std::vector<std::string> names;
  for (const engine::cli::Command& c : engine::cli::commands()) names.push_back(c.name);
  std::cerr << "engine: unknown command '" << args[0] << "'" << engine::plugins::did_you_mean(args[0], names)
            << " (commands: " << engine::plugins::join(names) << "; see engine --help)\n";
  return engine::cli::kExitUsage;
}
