// read_dist_env: our launcher's and torchrun's variables, Slurm's, neither; refusals name the variable.
#include "engine/dist/dist_env.hpp"

#include <gtest/gtest.h>

#include <map>

#include "engine/core/error.hpp"

namespace engine::dist {
namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(DistEnv, NoVariablesIsASingleProcess) {
  DistEnv d = read_dist_env(env_of({}));
  EXPECT_FALSE(d.distributed());
  EXPECT_EQ(d.rank, 0);
  EXPECT_EQ(d.world_size, 1);
}

TEST(DistEnv, TorchrunVariables) {
  DistEnv d = read_dist_env(env_of({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"},
                                    {"LOCAL_WORLD_SIZE", "4"}, {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29501"}}));
  EXPECT_TRUE(d.distributed());
  EXPECT_EQ(d.rank, 5);
  EXPECT_EQ(d.world_size, 8);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.local_world_size, 4);
  EXPECT_EQ(d.master_addr, "10.0.0.1");
  EXPECT_EQ(d.master_port, 29501);
  EXPECT_EQ(d.source, "torchrun-style environment");
  // torchrun's agent store holds MASTER_PORT: ours takes the next one
  EXPECT_EQ(read_dist_env(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "29500"},
                                  {"TORCHELASTIC_USE_AGENT_STORE", "True"}}))
                .master_port,
            29501);
}

TEST(DistEnv, SlurmVariablesTakeTheFirstNodeAsMaster) {
  DistEnv d = read_dist_env(env_of({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "1"},
                                    {"SLURM_NTASKS_PER_NODE", "2(x2)"}, {"SLURM_JOB_NODELIST", "gpu[07-08],cpu1"}}));
  EXPECT_EQ(d.rank, 3);
  EXPECT_EQ(d.world_size, 4);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.local_world_size, 2);
  EXPECT_EQ(d.master_addr, "gpu07");
  EXPECT_EQ(d.master_port, 29500);
  EXPECT_EQ(d.source, "Slurm environment");
  // MASTER_ADDR wins over the node list; torchrun's variables win over Slurm's.
  EXPECT_EQ(read_dist_env(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"MASTER_ADDR", "h"},
                                  {"SLURM_JOB_NODELIST", "a,b"}}))
                .master_addr,
            "h");
  EXPECT_EQ(read_dist_env(env_of({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"RANK", "0"}, {"WORLD_SIZE", "1"}}))
                .world_size,
            1);
}

TEST(DistEnv, FirstSlurmHost) {
  EXPECT_EQ(first_slurm_host("node001"), "node001");
  EXPECT_EQ(first_slurm_host("a,b,c"), "a");
  EXPECT_EQ(first_slurm_host("gpu[003-005,009]"), "gpu003");
  EXPECT_EQ(first_slurm_host("x[1,3],y[2-4]"), "x1");
}

TEST(DistEnv, BadValuesAreRefusedByName) {
  auto message = [](std::map<std::string, std::string> vars) {
    try {
      read_dist_env(env_of(std::move(vars)));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK=x"), std::string::npos);
  EXPECT_NE(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("rank 2 is not in [0, world size 2)"),
            std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}}).find("RANK and WORLD_SIZE must be set together"), std::string::npos);
  EXPECT_NE(message({{"MASTER_PORT", "70000"}}).find("MASTER_PORT=70000"), std::string::npos);
  EXPECT_NE(message({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}).find("SLURM_JOB_NODELIST"), std::string::npos);
}

}  // namespace
}  // namespace engine::dist
