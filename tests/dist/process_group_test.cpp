// ProcessGroup on CPU tensors (Gloo) with 2 and 3 ranks, each a thread of this process with its own
// rendezvous client (rank 0 hosts the store): every collective, the async forms, and a timeout that names
// the operation, the step and the rank that did not arrive.
#include "engine/dist/process_group.hpp"
#include "tests/dist/free_port.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <thread>

#include "engine/core/error.hpp"

namespace engine::dist {
namespace {

using rt::Tensor;


DistEnv env_of(int rank, int world, uint16_t port) {
  DistEnv e;
  e.rank = rank;
  e.world_size = world;
  e.local_rank = rank;
  e.local_world_size = world;
  e.master_port = port;
  return e;
}

Tensor cpu(std::vector<float> v) {
  return Tensor::from_vector(rt::Dims{static_cast<int64_t>(v.size())}, ENG_F32, rt::cpu_device(), v);
}

std::vector<float> values(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  t.copy_to_host(v.data(), v.size() * sizeof(float));
  return v;
}

// Runs body(group) on `world` threads; a failure inside a thread is recorded and reported.
template <typename Body>
void on_ranks(int world, Body body, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const uint16_t port = testing::free_port();
  std::vector<std::thread> ts;
  std::vector<std::string> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    ts.emplace_back([&, r] {
      try {
        ProcessGroupOptions o;
        o.timeout = timeout;
        o.rendezvous_timeout = std::chrono::seconds(30);
        ProcessGroup g(env_of(r, world, port), rt::cpu_device(), o);
        body(g);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : ts) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
}

class Collectives : public ::testing::TestWithParam<int> {};

TEST_P(Collectives, EveryCollectiveGivesTheSameResultOnEveryRank) {
  const int world = GetParam();
  on_ranks(world, [world](ProcessGroup& g) {
    const int r = g.rank();
    ASSERT_EQ(g.world_size(), world);
    // all_reduce_sum: rank r holds (r+1) * [1, 2, 3]
    Tensor a = cpu({float(r + 1), float(2 * (r + 1)), float(3 * (r + 1))});
    g.all_reduce_sum(a);
    const float s = float(world * (world + 1) / 2);
    EXPECT_EQ(values(a), (std::vector<float>{s, 2 * s, 3 * s}));
    // f64 and i64 too
    Tensor d = Tensor::from_vector(rt::Dims{1}, ENG_F64, rt::cpu_device(), std::vector<double>{0.5 + r});
    g.all_reduce_sum(d);
    double dv = 0;
    d.copy_to_host(&dv, sizeof dv);
    EXPECT_EQ(dv, 0.5 * world + world * (world - 1) / 2.0);
    // broadcast from the last rank
    Tensor b = cpu({float(r), float(-r)});
    g.broadcast(b, world - 1);
    EXPECT_EQ(values(b), (std::vector<float>{float(world - 1), float(-(world - 1))}));
    // all_gather: shard [r, 10r] -> [0, 0, 1, 10, 2, 20, ...]
    Tensor shard = cpu({float(r), float(10 * r)});
    Tensor full = cpu(std::vector<float>(size_t(2 * world), -1.f));
    g.all_gather(shard, full);
    std::vector<float> want;
    for (int i = 0; i < world; ++i) want.insert(want.end(), {float(i), float(10 * i)});
    EXPECT_EQ(values(full), want);
    // reduce_scatter_sum: every rank holds [0, 1, ..., 2w-1] * (r+1); rank r gets its 2 elements of the sum
    std::vector<float> fv;
    for (int i = 0; i < 2 * world; ++i) fv.push_back(float(i * (r + 1)));
    Tensor rs_in = cpu(fv), rs_out = cpu({0.f, 0.f});
    g.reduce_scatter_sum(rs_in, rs_out);
    EXPECT_EQ(values(rs_out), (std::vector<float>{float(2 * r) * s, float(2 * r + 1) * s}));
    // async: two all-reduces in flight, waited in reverse order
    Tensor x = cpu({1.f}), y = cpu({2.f});
    auto wx = g.all_reduce_sum_async(x);
    auto wy = g.all_reduce_sum_async(y);
    wy->wait();
    wx->wait();
    EXPECT_EQ(values(x)[0], float(world));
    EXPECT_EQ(values(y)[0], float(2 * world));
    g.barrier();
    // bad arguments are refused with the problem named
    Tensor wrong = cpu({0.f});
    EXPECT_THROW(g.all_gather(shard, wrong), Error);
    EXPECT_THROW(g.broadcast(b, world), Error);
  });
}

INSTANTIATE_TEST_SUITE_P(World, Collectives, ::testing::Values(2, 3));

// Subgroups of a 2 x 2 mesh on 4 ranks: "model" groups {0, 1} and {2, 3}, "data" groups {0, 2} and {1, 3}; every
// collective of a subgroup involves its members only, and world collectives still work in between.
TEST(ProcessGroupSubgroups, ATwoByTwoMeshSumsGathersAndBroadcastsWithinEachGroup) {
  on_ranks(4, [](ProcessGroup& g) {
    const int r = g.rank();
    std::unique_ptr<rt::Communicator> model = g.subgroup("model", r / 2);
    std::unique_ptr<rt::Communicator> data = g.subgroup("data", r % 2);
    ASSERT_EQ(model->world_size(), 2);
    ASSERT_EQ(data->world_size(), 2);
    EXPECT_EQ(model->rank(), r % 2);
    EXPECT_EQ(data->rank(), r / 2);
    Tensor a = cpu({float(r)});
    model->all_reduce_sum(a);
    EXPECT_EQ(values(a)[0], float(r / 2 == 0 ? 0 + 1 : 2 + 3));
    Tensor b = cpu({float(r)});
    data->all_reduce_sum(b);
    EXPECT_EQ(values(b)[0], float(r % 2 == 0 ? 0 + 2 : 1 + 3));
    Tensor w = cpu({1.f});
    g.all_reduce_sum(w);
    EXPECT_EQ(values(w)[0], 4.f);
    Tensor full = cpu({-1.f, -1.f});
    model->all_gather(cpu({float(10 * r)}), full);
    const float first = float(10 * (r / 2) * 2);
    EXPECT_EQ(values(full), (std::vector<float>{first, first + 10}));
    Tensor c = cpu({float(r)});
    data->broadcast(c, 1);  // from the group's rank 1: global rank 2 or 3
    EXPECT_EQ(values(c)[0], float(2 + r % 2));
    Tensor rs_out = cpu({0.f});
    model->reduce_scatter_sum(cpu({1.f, 2.f}), rs_out);
    EXPECT_EQ(values(rs_out)[0], float(2 * (1 + r % 2)));
    model->barrier();
    data->barrier();
  });
}

TEST(ProcessGroupTimeout, ACollectiveARankNeverJoinsFailsNamingTheOperationStepAndRank) {
  const auto start = std::chrono::steady_clock::now();
  std::string message;
  on_ranks(
      2,
      [&](ProcessGroup& g) {
        if (g.rank() == 1) {
          std::this_thread::sleep_for(std::chrono::milliseconds(3500));  // alive (heartbeats), never joins
          return;
        }
        g.set_step(7);
        Tensor t = cpu({1.f});
        try {
          g.all_reduce_sum(t);
        } catch (const Error& e) {
          message = e.what();
        }
      },
      std::chrono::milliseconds(1500));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(message.find("collective all_reduce_sum (#1) at step 7"), std::string::npos) << message;
  EXPECT_NE(message.find("rank 1 is alive but has not reached collective #1"), std::string::npos) << message;
  EXPECT_LT(took, 20.0);
}

TEST(ProcessGroupRendezvous, AnotherWorldSizeOnTheSamePortIsRefused) {
  const uint16_t port = testing::free_port();
  std::string message;
  std::thread r0([&] {
    try {
      ProcessGroupOptions o;
      o.rendezvous_timeout = std::chrono::seconds(3);
      ProcessGroup g(env_of(0, 2, port), rt::cpu_device(), o);
    } catch (const std::exception&) {
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  try {
    ProcessGroupOptions o;
    o.rendezvous_timeout = std::chrono::seconds(3);
    ProcessGroup g(env_of(1, 3, port), rt::cpu_device(), o);
  } catch (const Error& e) {
    message = e.what();
  }
  r0.join();
  EXPECT_NE(message.find("rank 0 started a job of world size 2 but this rank has WORLD_SIZE 3"), std::string::npos)
      << message;
}

}  // namespace
}  // namespace engine::dist
