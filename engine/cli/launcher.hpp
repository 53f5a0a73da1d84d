// The local launcher of `engine run --nproc-per-node N` (torchrun's job on one node):
//   - starts N workers (`engine run` with the other arguments) with RANK, WORLD_SIZE, LOCAL_RANK,
//     LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT set (rank = node_rank * N + local rank);
//   - prefixes every line they print with "[rank R] " (stdout to stdout, stderr to stderr);
//   - forwards SIGINT/SIGTERM to every worker (they finish the step, save, exit 0); a second signal kills;
//   - when one worker fails (non-zero exit or a signal), stops the others (SIGTERM, SIGKILL after 5 s) and
//     exits 1 naming it; with --max-restarts K it instead restarts every worker, at most K times (they resume
//     from the latest complete checkpoint through --resume auto) and says so.
// Without --master-port a single-node job picks a free port; several nodes default to 29500.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace engine::cli {

struct LaunchOptions {
  int nproc_per_node = 0;  // 0: not launching (a plain run or a worker)
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port (single node) or 29500
  int max_restarts = 0;
};

// Takes --nproc-per-node, --nnodes, --node-rank, --master-addr, --master-port, --max-restarts (and their
// --x=v forms) out of args; UsageError on bad values.
LaunchOptions take_launch_options(std::vector<std::string>& args);

// Runs the workers of this node with `worker_args` (the arguments after `engine run`); the exit code.
int launch_workers(const LaunchOptions& options, const std::vector<std::string>& worker_args);

}  // namespace engine::cli
