#include "engine/dist/dist_env.hpp"

#include <cstdlib>

#include "engine/core/error.hpp"

namespace engine::dist {

namespace {

int parse_int(const EnvLookup& env, const char* name, int fallback, int min) {
  std::optional<std::string> v = env(name);
  if (!v || v->empty()) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v->c_str(), &end, 10);
  if (end == v->c_str() || *end != '\0' || x < min || x > (1 << 20))
    fail("environment variable {}={} is not an integer >= {}", name, *v, min);
  return static_cast<int>(x);
}

}  // namespace

std::optional<std::string> process_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry ends at a comma outside brackets.
  size_t end = 0;
  int depth = 0;
  for (; end < nodelist.size(); ++end) {
    const char c = nodelist[end];
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ',' && depth == 0) break;
  }
  const std::string first = nodelist.substr(0, end);
  const size_t open = first.find('[');
  if (open == std::string::npos) return first;
  // prefix[03-05,07] -> prefix03 (the first number of the range keeps its zero padding)
  const std::string prefix = first.substr(0, open);
  size_t i = open + 1;
  size_t j = i;
  while (j < first.size() && first[j] >= '0' && first[j] <= '9') ++j;
  if (j == i) fail("SLURM_JOB_NODELIST '{}' has a bracket without a number", nodelist);
  return prefix + first.substr(i, j - i);
}

DistEnv read_dist_env(const EnvLookup& env) {
  DistEnv d;
  const int port = parse_int(env, "MASTER_PORT", 29500, 1);
  if (port > 65535) fail("MASTER_PORT={} is not a TCP port (1..65535)", port);
  d.master_port = static_cast<uint16_t>(port);
  if (auto a = env("MASTER_ADDR"); a && !a->empty()) d.master_addr = *a;

  if (env("RANK") || env("WORLD_SIZE")) {
    if (!env("RANK") || !env("WORLD_SIZE"))
      fail("RANK and WORLD_SIZE must be set together (torchrun sets both; so does engine run --nproc-per-node)");
    d.source = "torchrun-style environment";
    d.rank = parse_int(env, "RANK", 0, 0);
    d.world_size = parse_int(env, "WORLD_SIZE", 1, 1);
    d.local_rank = parse_int(env, "LOCAL_RANK", d.rank, 0);
    d.local_world_size = parse_int(env, "LOCAL_WORLD_SIZE", d.world_size, 1);
    // Under torchrun the elastic agent's own store already listens on MASTER_PORT (its workers are told so
    // by TORCHELASTIC_USE_AGENT_STORE): ours takes the next port.
    if (env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True") {
      if (d.master_port == 65535) fail("MASTER_PORT=65535 under torchrun: the engine's store needs MASTER_PORT + 1");
      d.master_port = static_cast<uint16_t>(d.master_port + 1);
    }
  } else if (env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    d.source = "Slurm environment";
    d.rank = parse_int(env, "SLURM_PROCID", 0, 0);
    d.world_size = parse_int(env, "SLURM_NTASKS", 1, 1);
    d.local_rank = parse_int(env, "SLURM_LOCALID", 0, 0);
    // SLURM_NTASKS_PER_NODE may read "4" or "4(x2)"; its leading number is the local world size.
    std::string per_node = env("SLURM_NTASKS_PER_NODE").value_or("");
    d.local_world_size = per_node.empty() ? d.world_size : std::max(1, std::atoi(per_node.c_str()));
    if (!env("MASTER_ADDR")) {
      std::optional<std::string> nodes = env("SLURM_JOB_NODELIST");
      if (!nodes || nodes->empty()) nodes = env("SLURM_NODELIST");
      if ((!nodes || nodes->empty()) && d.world_size > 1)
        fail("Slurm environment without SLURM_JOB_NODELIST: set MASTER_ADDR to the first node's address");
      if (nodes && !nodes->empty()) d.master_addr = first_slurm_host(*nodes);
    }
  } else {
    return d;
  }
  if (d.rank >= d.world_size)
    fail("rank {} is not in [0, world size {}) ({})", d.rank, d.world_size, d.source);
  if (d.local_rank >= d.local_world_size)
    fail("local rank {} is not in [0, local world size {}) ({})", d.local_rank, d.local_world_size, d.source);
  return d;
}

}  // namespace engine::dist
