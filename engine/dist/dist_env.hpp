// DistEnv: where this process sits in a distributed job, read from the environment. Three spellings are
// accepted, first match wins:
//   our launcher and torchrun: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//                              (under torchrun, TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent holds
//                              MASTER_PORT, so the engine's store listens on MASTER_PORT + 1)
//   Slurm (srun):              SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE, and the
//                              first host of SLURM_JOB_NODELIST as the master (MASTER_ADDR/MASTER_PORT still
//                              win when set; the port defaults to 29500 as torchrun's)
//   neither:                   a single process (rank 0 of 1)
// Malformed or inconsistent values are refused with the variable named.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace engine::dist {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  uint16_t master_port = 29500;
  std::string source = "single process";  // "torchrun-style environment", "Slurm environment"

  bool distributed() const { return world_size > 1; }
  // Started by a launcher (torchrun-style or Slurm variables), even at world size 1: the run then builds its
  // communicator (Gloo, NCCL) as it would for several ranks.
  bool launched() const { return source != "single process"; }
};

using EnvLookup = std::function<std::optional<std::string>(const char*)>;

// The process environment (getenv).
std::optional<std::string> process_env(const char* name);

DistEnv read_dist_env(const EnvLookup& env = process_env);

// The first host of a Slurm node list: "gpu[03-05,07],cpu1" -> "gpu03"; "a,b" -> "a".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace engine::dist
