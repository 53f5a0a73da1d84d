// ddp and zero2 with several processes on the CPU (Gloo), through the `engine` binary:
//   - tiny_lora, tiny_full and tiny_qlora at 2 and 3 ranks give the per-step losses of 1 rank with the same global batch
//     (6 rows: 1 x 6, 2 x 3, 3 x 2; relative difference below 1e-5 over 20 steps) and the same final weights;
//   - zero2: each rank's gradients + optimizer state after a step are 1/world of ddp's (balanced within 10%),
//     and the allocator's live bytes fall by that much;
//   - the same 2-rank job started by hand with torchrun's and with Slurm's variables rendezvouses the same
//     way and gives the same losses as our launcher;
//   - a checkpoint written by 2 ranks (ddp, zero2 with its sharded optimizer state) resumes on 1 and on 3
//     ranks and ends with the uninterrupted weights;
//   - a worker killed with SIGKILL: the launcher stops the other and exits non-zero naming the rank; with
//     --max-restarts 1 it restarts both, which resume from the latest checkpoint and end as an uninterrupted run;
//   - a worker stopped with SIGSTOP: the run ends within parallel.timeout_s naming the operation and rank.
#include <regex>
#include <dirent.h>

#include <cmath>
#include <cstring>

#include "tests/dist/dist_e2e_support.hpp"
#include "tests/dist/free_port.hpp"

namespace engine::e2e {
namespace {

// The pids of the launcher's children, by their RANK.
std::map<int, pid_t> workers_of(pid_t launcher) {
  std::map<int, pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    const std::string status = read_file(fs::path("/proc") / e->d_name / "status");
    const size_t p = status.find("PPid:");
    if (p == std::string::npos || std::atoi(status.c_str() + p + 5) != launcher) continue;
    const std::string env = read_file(fs::path("/proc") / e->d_name / "environ");
    for (size_t i = 0; i < env.size(); i += std::strlen(env.c_str() + i) + 1) {
      if (env.compare(i, 5, "RANK=") == 0) out[std::atoi(env.c_str() + i + 5)] = pid;
    }
  }
  closedir(d);
  return out;
}


void equivalence(const Job& job) {
  const fs::path dir = fresh_dir("ddp_" + job.recipe);
  const fs::path model = dir / "model";
  const fs::path one = dir / "w1";
  ASSERT_EQ(run_engine(run_args(job, model, one, 1), dir / "w1.log"), 0) << read_file(dir / "w1.log");
  const std::vector<double> ref = losses(one);
  ASSERT_EQ(ref.size(), size_t(kSteps));
  for (int world : {2, 3}) {
   std::map<std::string, std::map<int, std::pair<double, double>>> held;
   for (const std::string strategy : {"ddp", "zero2"}) {
    const std::string name = strategy + "_w" + std::to_string(world);
    const fs::path out = dir / name;
    const fs::path log = dir / (name + ".log");
    ASSERT_EQ(run_engine(launched(run_args(job, model, out, world, {"--set", "parallel.plugin=" + strategy}), world),
                         log),
              0)
        << read_file(log);
    const std::string text = read_file(log);
    EXPECT_NE(text.find(std::to_string(world) + " ranks x micro_batch_size " + std::to_string(kGlobalRows / world) +
                        " x grad_accum 1 = effective batch of 6 rows per step"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("[rank 1] "), std::string::npos) << "log lines are prefixed with the rank";
    expect_close_losses(ref, losses(out), job.recipe + " " + name);
    expect_close_weights(one / "checkpoint-20" / job.weights, out / "checkpoint-20" / job.weights,
                         job.recipe + " " + name);
    held[strategy] = held_bytes(text);
    ASSERT_EQ(held[strategy].size(), size_t(world)) << text;
   }
   // zero2 holds 1/world of ddp's gradients + optimizer state on every rank, and the allocator shows it.
   const double full = held["ddp"][0].second;
   for (int r = 0; r < world; ++r) {
     const double share = held["zero2"][r].second;
     std::cout << job.recipe << " zero2 at " << world << " ranks: rank " << r << " holds " << share << " of " << full
               << " bytes of gradients and optimizer state; allocator " << held["zero2"][r].first << " vs ddp "
               << held["ddp"][r].first << "\n";
     EXPECT_LT(share, 1.1 * full / world) << "rank " << r;
     EXPECT_GT(share, 0.9 * full / world) << "rank " << r;
     EXPECT_LT(held["zero2"][r].first, held["ddp"][r].first - 0.9 * (full - share)) << "rank " << r;
   }
  }
}

TEST(Ddp, TinyLoraDdpAndZero2OnTwoAndThreeRanksMatchOneRank) { equivalence(kLora); }

TEST(Ddp, TinyFullDdpAndZero2OnTwoAndThreeRanksMatchOneRank) { equivalence(kFull); }

// QLoRA on several ranks: the nf4 base is frozen and quantized alike on every rank from the same file, so
// replicating it (ddp, zero2) needs nothing of the strategy; both declare ENG_PAR_CAP_QUANTIZED (the recipe
// loader refused the pair before, while every sharding strategy's refusal told the user to take ddp).
TEST(Ddp, TinyQloraDdpAndZero2OnTwoAndThreeRanksMatchOneRank) { equivalence(kQLora); }

TEST(Ddp, TorchrunAndSlurmEnvironmentsRendezvousLikeTheLauncher) {
  const fs::path dir = fresh_dir("ddp_env");
  const fs::path model = dir / "model";
  const fs::path ours = dir / "launcher";
  ASSERT_EQ(run_engine(launched(run_args(kLora, model, ours, 2), 2), dir / "launcher.log"), 0)
      << read_file(dir / "launcher.log");
  const std::vector<double> ref = losses(ours);
  for (const std::string style : {"torchrun", "slurm"}) {
    const fs::path out = dir / style;
    const std::string port = std::to_string(testing::free_port());
    std::vector<pid_t> pids;
    for (int r = 0; r < 2; ++r) {
      std::vector<std::string> env;
      if (style == "torchrun")
        env = {"RANK=" + std::to_string(r), "WORLD_SIZE=2", "LOCAL_RANK=" + std::to_string(r), "LOCAL_WORLD_SIZE=2",
               "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port};
      else
        env = {"SLURM_PROCID=" + std::to_string(r), "SLURM_NTASKS=2", "SLURM_LOCALID=" + std::to_string(r),
               "SLURM_JOB_NODELIST=localhost", "MASTER_PORT=" + port};
      pids.push_back(spawn(run_args(kLora, model, out, 2), dir / (style + ".log"), {}, env));
    }
    for (pid_t p : pids) EXPECT_EQ(wait_exit(p), 0) << read_file(dir / (style + ".log"));
    const std::string text = read_file(dir / (style + ".log"));
    EXPECT_NE(text.find(style == "torchrun" ? "torchrun-style environment" : "Slurm environment"), std::string::npos)
        << text;
    EXPECT_EQ(losses(out), ref) << style;  // the same ranks and batches: the same bits
  }
}

TEST(Ddp, ATwoRankCheckpointResumesOnOneAndThreeRanks) {
  const fs::path dir = fresh_dir("ddp_resume");
  const fs::path model = dir / "model";
  const fs::path straight = dir / "straight";
  ASSERT_EQ(run_engine(run_args(kLora, model, straight, 1), dir / "straight.log"), 0) << read_file(dir / "straight.log");
  const std::vector<double> ref = losses(straight);
  for (const std::string strategy : {"ddp", "zero2"}) {
  const fs::path two = dir / (strategy + "_two");
  const std::vector<std::string> par = {"--set", "parallel.plugin=" + strategy};
  ASSERT_EQ(run_engine(launched(run_args(kLora, model, two, 2, par), 2), dir / "two.log"), 0) << read_file(dir / "two.log");
  ASSERT_TRUE(fs::exists(two / "checkpoint-10" / "trainer_state.json"));
  if (strategy == "zero2") {
    EXPECT_TRUE(fs::exists(two / "checkpoint-10" / "optimizer-rank00000-of-00002.safetensors"));
    EXPECT_TRUE(fs::exists(two / "checkpoint-10" / "optimizer-rank00001-of-00002.safetensors"));
    EXPECT_FALSE(fs::exists(two / ".optimizer-shards" / "step-10")) << "the shares were moved into the checkpoint";
  }
  for (int world : {1, 3}) {
    const std::string name = strategy + "_resumed" + std::to_string(world);
    const fs::path out = dir / name;
    const fs::path log = dir / (name + ".log");
    std::vector<std::string> args = run_args(kLora, model, out, world, {"--resume", (two / "checkpoint-10").string()});
    if (world > 1) args.insert(args.end(), par.begin(), par.end());
    ASSERT_EQ(run_engine(world == 1 ? args : launched(args, world), log), 0) << read_file(log);
    EXPECT_NE(read_file(log).find("resumed from"), std::string::npos);
    const std::vector<double> tail = losses(out);  // steps 11..20
    expect_close_losses(std::vector<double>(ref.begin() + 10, ref.end()), tail,
                        "2-rank " + strategy + " checkpoint resumed on " + std::to_string(world));
    expect_close_weights(straight / "checkpoint-20" / kLora.weights, out / "checkpoint-20" / kLora.weights,
                         "2-rank " + strategy + " checkpoint resumed on " + std::to_string(world));
  }
  }
}

// Starts a long 2-rank run, waits until it trains, does `act` to rank 1, and returns (exit code, seconds
// from the act to the launcher's exit, log).
struct Ended {
  int code;
  double seconds;
  std::string log;
};

Ended disturb_rank1(const std::string& name, int sig, double timeout_s) {
  const fs::path dir = fresh_dir("ddp_" + name);
  std::vector<std::string> args = run_args(kLora, dir / "model", dir / "out", 2,
                                           {"--set", "train.max_steps=100000", "--set", "checkpoint.save_every=0",
                                            "--set", "parallel.plugin=ddp", "--set",
                                            "parallel.timeout_s=" + std::to_string(timeout_s)});
  const fs::path log = dir / "run.log";
  const pid_t launcher = spawn(launched(args, 2), log);
  const bool training = wait_until([&] { return train_lines(dir / "out").size() >= 3; }, 120);
  std::map<int, pid_t> ws = workers_of(launcher);
  if (!training || ws.count(1) == 0) {
    kill(launcher, SIGKILL);
    wait_exit(launcher);
    ADD_FAILURE() << "the run did not start training: " << read_file(log);
    return {-1, 0, read_file(log)};
  }
  const auto t0 = std::chrono::steady_clock::now();
  kill(ws[1], sig);
  const int code = wait_exit(launcher);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto [r, pid] : ws) kill(pid, SIGKILL);  // nothing should be left; make sure
  return {code, s, read_file(log)};
}

TEST(Ddp, AKilledWorkerStopsTheRunNamingItsRank) {
  const Ended e = disturb_rank1("sigkill", SIGKILL, 30);
  EXPECT_EQ(e.code, 1) << e.log;
  EXPECT_LT(e.seconds, 30.0) << e.log;
  EXPECT_NE(e.log.find("launcher: the run failed: worker rank 1 was killed by signal 9"), std::string::npos) << e.log;
}

// --max-restarts: rank 1 dies by SIGKILL at step 13 (once: ENGINE_FAULT_KILL leaves a marker); the launcher
// restarts both workers, which resume from the latest checkpoint (--resume auto) and end with the losses and
// weights of an uninterrupted single-process run.
TEST(Ddp, MaxRestartsRestartsEveryWorkerFromTheLatestCheckpoint) {
  const fs::path dir = fresh_dir("ddp_restart");
  const fs::path model = dir / "model";
  const fs::path straight = dir / "straight";
  ASSERT_EQ(run_engine(run_args(kLora, model, straight, 1), dir / "straight.log"), 0) << read_file(dir / "straight.log");
  const fs::path out = dir / "out";
  std::vector<std::string> args = launched(run_args(kLora, model, out, 2, {"--set", "parallel.plugin=ddp"}), 2);
  args.insert(args.begin() + 1, {"--max-restarts", "1"});
  const fs::path log = dir / "restart.log";
  const std::string marker = "ENGINE_FAULT_KILL=1:13:" + (dir / "killed").string();
  ASSERT_EQ(wait_exit(spawn(args, log, {}, {marker})), 0) << read_file(log);
  const std::string text = read_file(log);
  EXPECT_TRUE(fs::exists(dir / "killed")) << "the fault never fired: " << text;
  EXPECT_NE(text.find("launcher: worker rank 1 was killed by signal 9 (Killed); restarting every worker (restart 1 of "
                      "1) from the latest checkpoint"),
            std::string::npos)
      << text;
  // From checkpoint-10, or from the one rank 0 saved after step 12 when its collective failed (ddp's replicas
  // are whole, so rank 0 alone holds the complete state after the last completed step).
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(resumed from \S+/checkpoint-1[02] at step 1[02]/20)"))) << text;
  expect_close_losses(losses(straight), losses(out), "2-rank ddp restarted after a SIGKILL at step 13");
  expect_close_weights(straight / "checkpoint-20" / kLora.weights, out / "checkpoint-20" / kLora.weights,
                       "2-rank ddp restarted after a SIGKILL at step 13");
  // Without restarts left the same fault ends the run naming the rank.
  const fs::path again = dir / "no_restart";
  std::vector<std::string> once = launched(run_args(kLora, model, again, 2, {"--set", "parallel.plugin=ddp"}), 2);
  const std::string marker2 = "ENGINE_FAULT_KILL=1:13:" + (dir / "killed2").string();
  EXPECT_EQ(wait_exit(spawn(once, dir / "no_restart.log", {}, {marker2})), 1);
  EXPECT_NE(read_file(dir / "no_restart.log").find("launcher: the run failed: worker rank 1 was killed by signal 9"),
            std::string::npos)
      << read_file(dir / "no_restart.log");
}

TEST(Ddp, AStoppedWorkerEndsTheRunWithinTheTimeoutNamingTheOperation) {
  const double timeout = 4;
  const Ended e = disturb_rank1("sigstop", SIGSTOP, timeout);
  EXPECT_EQ(e.code, 1) << e.log;
  // the collective's timeout, the diagnosis, and the launcher's stop (SIGTERM, SIGKILL after 5 s)
  EXPECT_LT(e.seconds, timeout + 15.0) << e.log;
  EXPECT_NE(e.log.find("[rank 0] "), std::string::npos);
  // The operation rank 0 waits in is named (an all-reduce of the step, or the barrier of a checkpoint, as the
  // stop happens to fall).
  EXPECT_TRUE(std::regex_search(e.log, std::regex(R"(collective (all_reduce_sum|barrier|broadcast|all_gather)[a-z_]* \(#\d+\) at step \d+)")))
      << e.log;
  EXPECT_NE(e.log.find("rank 1 is not answering"), std::string::npos) << e.log;
  EXPECT_NE(e.log.find("launcher: the run failed: worker rank 0 exited with status 1"), std::string::npos) << e.log;
}

TEST(Ddp, SeveralNodesWithoutAMasterAddressAreRefused) {
  const fs::path dir = fresh_dir("ddp_refused");
  const fs::path log = dir / "nnodes.log";
  EXPECT_EQ(run_engine({"run", (source_dir() / "recipes/tiny_lora.toml").string(), "--nproc-per-node", "2",
                        "--nnodes", "2"},
                       log),
            2);
  EXPECT_NE(read_file(log).find("--nnodes 2 needs --master-addr"), std::string::npos) << read_file(log);
}

}  // namespace
}  // namespace engine::e2e
