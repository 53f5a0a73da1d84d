// Attention on CUDA against the CPU reference (kernels/cpu/attention.hpp, run in double so that the measured
// error is the GPU's alone): the own tiled kernels in fp32 and bf16 (forward, lse, dq, dk, dv) and cuDNN's
// fused SDPA in bf16, at odd sequence lengths, MHA and GQA head counts, head dims 64 and 128, with packed
// segments (several per row, padding 0 at the end), the generation shape (one query against a longer KV
// cache with a row stride above Tk), the device-side ragged offsets, and bitwise repeatability of both
// backwards.
//
// Error norm: rel_error of cuda_test_support.hpp (max abs difference / max |reference|). Tolerances:
//  - fp32, own kernels: 1e-5. The kernels compute in fp32 with exact expf/logf; what differs from the double
//    reference is rounding in sums of at most G * T = 2100 products, each O(1) with relative error 2^-24, and
//    the online-softmax rescale, well below 1e-5 for these sizes (every case here passes at 1e-5
//    on an H200). With Tk == 1, grad_q and grad_k are exactly zero and are held to an absolute 1e-5.
//  - bf16 (own kernels and cuDNN): 1e-2 on the outputs and gradients, which are rounded to bf16 (2^-8
//    relative) once at the end; cuDNN also rounds P and dS to bf16 before its tensor-core GEMMs.
//  - lse is fp32 in every path: 1e-5 (own) and 1e-3 (cuDNN, whose scores come from bf16 tensor-core GEMMs
//    with fp32 accumulation, in a different order).
#include "kernels/cpu/attention.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <iostream>
#include <vector>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/attention_cudnn.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace engine::cuda_test {
namespace {

struct Case {
  int64_t B, Tq, Tk, Hq, Hkv, D;
  int64_t q_offset = 0;
  int64_t kv_rows = 0;  // rows per batch in the k/v buffers (>= Tk; 0: Tk)
  bool segments = false;
  std::string name() const {
    return "B" + std::to_string(B) + " Tq" + std::to_string(Tq) + " Tk" + std::to_string(Tk) + " Hq" +
           std::to_string(Hq) + "/" + std::to_string(Hkv) + " D" + std::to_string(D) + " off" +
           std::to_string(q_offset) + " rows" + std::to_string(rows()) + (segments ? " seg" : "");
  }
  int64_t rows() const { return kv_rows ? kv_rows : Tk; }
  int64_t kv_stride() const { return rows() * Hkv * D; }
  float scale() const { return 1.0f / std::sqrt(static_cast<float>(D)); }
  cuda::AttentionDims dims() const { return {B, Tq, Tk, Hq, Hkv, D, q_offset, kv_stride()}; }
};

struct Inputs {
  std::vector<float> q, k, v, grad_out;  // k, v: B * kv_stride, rows past Tk are NaN (never read)
  std::vector<int32_t> seg;              // (B, T) or empty
};

// Segment ids as the packer writes them: runs 1, 2, ... of uneven lengths, then padding 0 to the row's end.
std::vector<int32_t> make_segments(int64_t B, int64_t T, uint64_t seed) {
  std::vector<int32_t> seg(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t pad = T >= 8 ? T / 8 + b : 0;  // padding at the end of the row
    int64_t t = 0;
    int32_t id = 1;
    uint64_t x = seed * 6364136223846793005ull + static_cast<uint64_t>(b) * 1442695040888963407ull + 1;
    while (t < T - pad) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      const int64_t len = std::min<int64_t>(T - pad - t, 1 + static_cast<int64_t>((x >> 33) % 41));
      for (int64_t e = 0; e < len; ++e) seg[static_cast<size_t>(b * T + t + e)] = id;
      t += len;
      ++id;
    }
    for (; t < T; ++t) seg[static_cast<size_t>(b * T + t)] = 0;
  }
  return seg;
}

Inputs make_inputs(const Case& c, uint64_t seed, bool bf16) {
  Inputs in;
  const auto nq = static_cast<size_t>(c.B * c.Tq * c.Hq * c.D);
  const auto nkv = static_cast<size_t>(c.B * c.kv_stride());
  in.q = random_values(nq, seed, -2.0f, 2.0f);
  in.k = random_values(nkv, seed + 1);
  in.v = random_values(nkv, seed + 2);
  in.grad_out = random_values(nq, seed + 3);
  if (bf16) {
    in.q = round_to_bf16(in.q);
    in.k = round_to_bf16(in.k);
    in.v = round_to_bf16(in.v);
    in.grad_out = round_to_bf16(in.grad_out);
  }
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = c.Tk; j < c.rows(); ++j)
      for (int64_t e = 0; e < c.Hkv * c.D; ++e) {
        const auto idx = static_cast<size_t>(b * c.kv_stride() + j * c.Hkv * c.D + e);
        in.k[idx] = in.v[idx] = std::numeric_limits<float>::quiet_NaN();
      }
  if (c.segments) in.seg = make_segments(c.B, c.Tq, seed + 4);
  return in;
}

struct Result {
  std::vector<float> out, lse, dq, dk, dv;
};

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }
std::vector<float> to_float(const std::vector<double>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = static_cast<float>(v[i]);
  return r;
}

// The CPU reference in double on the (possibly bf16-rounded) inputs.
Result cpu_reference(const Case& c, const Inputs& in, bool backward) {
  static cpu::ThreadPool pool(4);
  const cpu::AttentionDims d{c.B, c.Tq, c.Tk, c.Hq, c.Hkv, c.D, c.q_offset, c.kv_stride()};
  const auto q = to_double(in.q), k = to_double(in.k), v = to_double(in.v), go = to_double(in.grad_out);
  const int32_t* seg = c.segments ? in.seg.data() : nullptr;
  std::vector<double> out(q.size()), lse(static_cast<size_t>(c.B * c.Hq * c.Tq));
  cpu::attention_forward<double>(pool, d, q.data(), k.data(), v.data(), seg, c.scale(), out.data(),
                                 lse.data());
  Result r{to_float(out), to_float(lse), {}, {}, {}};
  if (backward) {
    const auto nkv = static_cast<size_t>(c.B * c.Tk * c.Hkv * c.D);
    std::vector<double> dq(q.size()), dk(nkv), dv(nkv);
    cpu::attention_backward<double>(pool, d, q.data(), k.data(), v.data(), seg, c.scale(), out.data(),
                                    lse.data(), go.data(), dq.data(), dk.data(), dv.data());
    r.dq = to_float(dq);
    r.dk = to_float(dk);
    r.dv = to_float(dv);
  }
  return r;
}

template <typename T>
std::vector<T> to_storage(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return to_bf16(v);
}
template <typename T>
std::vector<float> to_host_float(const DeviceBuffer<T>& buf) {
  if constexpr (std::is_same_v<T, float>)
    return buf.download();
  else
    return from_bf16(buf.download());
}

class Stream {
 public:
  Stream() { cudaStreamCreate(&s_); }  // ordered after the test buffers' uploads (legacy default stream)
  ~Stream() { cudaStreamDestroy(s_); }
  operator cudaStream_t() const { return s_; }

 private:
  cudaStream_t s_{};
};

// Device copies of one case's inputs and its outputs.
template <typename T>
struct DeviceCase {
  DeviceBuffer<T> q, k, v, grad_out, out, dq, dk, dv;
  DeviceBuffer<float> lse;
  DeviceBuffer<int32_t> seg;
  DeviceCase(const Case& c, const Inputs& in)
      : q(to_storage<T>(in.q)),
        k(to_storage<T>(in.k)),
        v(to_storage<T>(in.v)),
        grad_out(to_storage<T>(in.grad_out)),
        out(in.q.size()),
        dq(in.q.size()),
        dk(static_cast<size_t>(c.B * c.Tk * c.Hkv * c.D)),
        dv(static_cast<size_t>(c.B * c.Tk * c.Hkv * c.D)),
        lse(static_cast<size_t>(c.B * c.Hq * c.Tq)),
        seg(c.segments ? in.seg : std::vector<int32_t>(1, 0)) {}
  const int32_t* segments(const Case& c) const { return c.segments ? seg.get() : nullptr; }
};

template <typename T>
Result run_own(const Case& c, const Inputs& in, bool backward) {
  Stream stream;
  DeviceCase<T> g(c, in);
  cuda::attention_forward<T>(c.dims(), g.q.get(), g.k.get(), g.v.get(), g.segments(c), c.scale(), g.out.get(),
                             g.lse.get(), stream);
  if (backward)
    cuda::attention_backward<T>(c.dims(), g.q.get(), g.k.get(), g.v.get(), g.segments(c), c.scale(),
                                g.out.get(), g.lse.get(), g.grad_out.get(), g.dq.get(), g.dk.get(),
                                g.dv.get(), stream);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  Result r{to_host_float(g.out), g.lse.download(), {}, {}, {}};
  if (backward) {
    r.dq = to_host_float(g.dq);
    r.dk = to_host_float(g.dk);
    r.dv = to_host_float(g.dv);
  }
  return r;
}

void expect_close(const Case& c, const char* what, const std::vector<float>& got,
                  const std::vector<float>& want, double tol) {
  const double err = rel_error(got, want);
  EXPECT_LE(err, tol) << what << " of " << c.name();
}

// With a single key (Tk == 1) P == 1 and dS = dO . v - dO . O = 0 exactly, so grad_q and grad_k are rounding
// noise around zero and a relative norm means nothing: they are held to an absolute error of tol instead.
void expect_zero_or_close(const Case& c, const char* what, const std::vector<float>& got,
                          const std::vector<float>& want, double tol) {
  if (c.Tk > 1) return expect_close(c, what, got, want, tol);
  double worst = got.size() == want.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    worst = std::max(worst, std::isnan(got[i]) ? INFINITY : std::fabs(double(got[i]) - want[i]));
  EXPECT_LE(worst, tol) << what << " (absolute error, Tk == 1) of " << c.name();
}

void compare(const Case& c, const Result& got, const Result& want, double tol, double lse_tol,
             bool backward) {
  expect_close(c, "out", got.out, want.out, tol);
  expect_close(c, "lse", got.lse, want.lse, lse_tol);
  if (!backward) return;
  expect_zero_or_close(c, "grad_q", got.dq, want.dq, tol);
  expect_zero_or_close(c, "grad_k", got.dk, want.dk, tol);
  expect_close(c, "grad_v", got.dv, want.dv, tol);
}

// B = 2 at odd lengths, MHA 4/4 and GQA 8/2 and 28/4, D 64 and 128; with and without segments.
std::vector<Case> training_cases(const std::vector<int64_t>& lengths) {
  std::vector<Case> cases;
  const int64_t heads[][2] = {{4, 4}, {8, 2}, {28, 4}};
  for (const int64_t D : {64, 128})
    for (const auto& h : heads)
      for (const int64_t T : lengths)
        for (const bool seg : {false, true}) cases.push_back(Case{2, T, T, h[0], h[1], D, 0, 0, seg});
  return cases;
}

// One query row against a 37-row KV cache held in 64-row slots (kv_batch_stride > Tk * Hkv * D).
std::vector<Case> generation_cases() {
  return {Case{2, 1, 37, 8, 2, 64, 36, 64, false}, Case{2, 1, 37, 28, 4, 128, 36, 64, false},
          Case{2, 5, 37, 4, 4, 128, 32, 48, false}};
}

TEST(CudaAttention, OwnKernelFp32MatchesCpu) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 100;
  for (const Case& c : training_cases({1, 17, 77, 129, 300})) {
    const Inputs in = make_inputs(c, seed++, false);
    compare(c, run_own<float>(c, in, true), cpu_reference(c, in, true), 1e-5, 1e-5, true);
  }
}

TEST(CudaAttention, OwnKernelBf16MatchesCpu) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 200;
  for (const Case& c : training_cases({1, 33, 255})) {
    const Inputs in = make_inputs(c, seed++, true);
    compare(c, run_own<__nv_bfloat16>(c, in, true), cpu_reference(c, in, true), 1e-2, 1e-5, true);
  }
}

TEST(CudaAttention, OwnKernelGenerationShape) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 300;
  for (const Case& c : generation_cases()) {
    const Inputs in32 = make_inputs(c, seed, false);
    compare(c, run_own<float>(c, in32, true), cpu_reference(c, in32, true), 1e-5, 1e-5, true);
    const Inputs in16 = make_inputs(c, seed++, true);
    compare(c, run_own<__nv_bfloat16>(c, in16, false), cpu_reference(c, in16, false), 1e-2, 1e-5, false);
  }
}

TEST(CudaAttention, OwnKernelOtherHeadDims) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 400;
  for (const int64_t D : {1, 40, 96, 200, 256}) {
    const Case c{2, 45, 45, 4, 2, D, 0, 0, true};
    const Inputs in = make_inputs(c, seed++, false);
    compare(c, run_own<float>(c, in, true), cpu_reference(c, in, true), 1e-5, 1e-5, true);
  }
  const Case too_big{1, 4, 4, 2, 2, 264};
  float* none = nullptr;
  EXPECT_THROW(cuda::attention_forward<float>(too_big.dims(), none, none, none, nullptr, 1.0f, none, nullptr,
                                              cudaStream_t{}),
               std::invalid_argument);
}

template <typename T>
void expect_backward_repeatable(const Case& c) {
  const Inputs in = make_inputs(c, 500, std::is_same_v<T, __nv_bfloat16>);
  Stream stream;
  DeviceCase<T> g(c, in);
  cuda::attention_forward<T>(c.dims(), g.q.get(), g.k.get(), g.v.get(), g.segments(c), c.scale(), g.out.get(),
                             g.lse.get(), stream);
  std::vector<T> first[3];
  for (int run = 0; run < 3; ++run) {
    cuda::attention_backward<T>(c.dims(), g.q.get(), g.k.get(), g.v.get(), g.segments(c), c.scale(),
                                g.out.get(), g.lse.get(), g.grad_out.get(), g.dq.get(), g.dk.get(),
                                g.dv.get(), stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const std::vector<T> now[3] = {g.dq.download(), g.dk.download(), g.dv.download()};
    for (int t = 0; t < 3; ++t) {
      if (run == 0)
        first[t] = now[t];
      else
        EXPECT_EQ(std::memcmp(first[t].data(), now[t].data(), now[t].size() * sizeof(T)), 0)
            << "gradient " << t << " of run " << run << " differs bitwise, " << c.name();
    }
  }
}

TEST(CudaAttention, OwnBackwardIsBitwiseRepeatable) {
  SKIP_WITHOUT_GPU();
  expect_backward_repeatable<float>(Case{2, 300, 300, 28, 4, 128, 0, 0, true});
  expect_backward_repeatable<__nv_bfloat16>(Case{2, 257, 257, 8, 2, 64, 0, 0, false});
}

TEST(CudaAttention, SegmentOffsetsOnDevice) {
  SKIP_WITHOUT_GPU();
  const int64_t B = 3, T = 300, Hq = 7, qte = Hq * 64, kvte = 2 * 64, kvbe = 320 * kvte;
  const std::vector<int32_t> seg = make_segments(B, T, 9);
  // Host expectation: runs in row-major order.
  std::vector<int32_t> len, qo, kvo, so;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const int64_t idx = b * T + t;
      if (t == 0 || seg[idx] != seg[idx - 1]) {
        len.push_back(0);
        qo.push_back(static_cast<int32_t>(idx * qte));
        kvo.push_back(static_cast<int32_t>(b * kvbe + t * kvte));
        so.push_back(static_cast<int32_t>(b * Hq * T + t));
      }
      ++len.back();
    }
  const auto runs = static_cast<int64_t>(len.size());
  const int64_t max_seq = runs + 5;
  DeviceBuffer<int32_t> d_seg(seg), d_len(max_seq), d_qo(max_seq + 1), d_kvo(max_seq + 1), d_so(max_seq + 1),
      d_count(1);
  Stream stream;
  cuda::attention_segment_offsets(d_seg.get(), B, T, Hq, qte, kvte, kvbe, max_seq, d_len.get(), d_qo.get(),
                                  d_kvo.get(), d_so.get(), d_count.get(), stream);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(d_count.download()[0], runs);
  const auto glen = d_len.download(), gqo = d_qo.download(), gkvo = d_kvo.download(), gso = d_so.download();
  for (int64_t s = 0; s < max_seq; ++s) {
    if (s < runs) {
      EXPECT_EQ(glen[s], len[s]) << "run " << s;
      EXPECT_EQ(gqo[s], qo[s]) << "run " << s;
      EXPECT_EQ(gkvo[s], kvo[s]) << "run " << s;
      EXPECT_EQ(gso[s], so[s]) << "run " << s;
    } else {
      EXPECT_EQ(glen[s], 0) << "unused " << s;
      EXPECT_EQ(gqo[s], B * T * qte) << "unused " << s;
    }
  }
  EXPECT_EQ(gqo[max_seq], B * T * qte);
  EXPECT_EQ(gso[max_seq], B * Hq * T);
}

// ---- cuDNN ----

#define SKIP_WITHOUT_CUDNN()                                                       \
  do {                                                                             \
    SKIP_WITHOUT_GPU();                                                            \
    std::string why_cudnn_;                                                        \
    if (!cuda::attention_cudnn_available(&why_cudnn_)) GTEST_SKIP() << why_cudnn_; \
  } while (0)

cuda::CudnnAttentionProblem problem_of(const Case& c, bool with_lse) {
  cuda::CudnnAttentionProblem pb;
  pb.dims = c.dims();
  pb.scale = c.scale();
  pb.segments = c.segments;
  pb.with_lse = with_lse;
  return pb;
}

// Runs cuDNN's forward (and backward); ADD_FAILURE with cuDNN's reason when it refuses the case.
bool run_cudnn(cuda::CudnnAttention& att, const Case& c, const Inputs& in, bool backward, bool with_lse,
               Result* r, int64_t max_sequences = 0, bool deterministic = true) {
  cuda::CudnnAttentionProblem pb = problem_of(c, with_lse);
  pb.max_sequences = max_sequences;
  pb.deterministic = deterministic;
  if (const std::string why = att.forward_unsupported(pb); !why.empty()) {
    // The one documented forward refusal of these cases: packed rows of a single token.
    if (!(c.segments && c.Tq == 1))
      ADD_FAILURE() << "cuDNN refused the forward of " << c.name() << ": " << why;
    return false;
  }
  // The documented refusals: packed rows (segments) and Tq == Tk == 1, where cuDNN's backward validation
  // says "s_q = s_kv = 1 is not supported". Those take the own backward kernel on cuDNN's out and lse, as the
  // runtime's fallback does; any other refusal fails the test.
  bool own_backward = false;
  if (backward)
    if (const std::string why = att.backward_unsupported(pb); !why.empty()) {
      if (!c.segments && c.Tq != 1) {
        ADD_FAILURE() << "cuDNN refused the backward of " << c.name() << ": " << why;
        return false;
      }
      own_backward = true;
    }
  Stream stream;
  DeviceCase<__nv_bfloat16> g(c, in);
  const size_t ws_bytes = std::max(att.forward_workspace_bytes(pb),
                                   backward && !own_backward ? att.backward_workspace_bytes(pb) : size_t{0});
  DeviceBuffer<uint8_t> ws(std::max<size_t>(ws_bytes, 1));
  att.forward(pb, g.q.get(), g.k.get(), g.v.get(), g.segments(c), g.out.get(),
              with_lse ? g.lse.get() : nullptr, ws.get(), ws_bytes, stream);
  if (backward && own_backward)
    cuda::attention_backward<__nv_bfloat16>(c.dims(), g.q.get(), g.k.get(), g.v.get(), g.segments(c),
                                            c.scale(), g.out.get(), g.lse.get(), g.grad_out.get(), g.dq.get(),
                                            g.dk.get(), g.dv.get(), stream);
  else if (backward)
    att.backward(pb, g.q.get(), g.k.get(), g.v.get(), g.segments(c), g.out.get(), g.lse.get(),
                 g.grad_out.get(), g.dq.get(), g.dk.get(), g.dv.get(), ws.get(), ws_bytes, stream);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  r->out = from_bf16(g.out.download());
  if (with_lse) r->lse = g.lse.download();
  if (backward) {
    r->dq = from_bf16(g.dq.download());
    r->dk = from_bf16(g.dk.download());
    r->dv = from_bf16(g.dv.download());
  }
  return true;
}

TEST(CudaAttention, CudnnBf16MatchesCpu) {
  SKIP_WITHOUT_CUDNN();
  cuda::CudnnAttention att;
  uint64_t seed = 600;
  for (const Case& c : training_cases({1, 17, 129, 300})) {
    const Inputs in = make_inputs(c, seed++, true);
    Result r;
    if (!run_cudnn(att, c, in, true, true, &r)) continue;
    compare(c, r, cpu_reference(c, in, true), 1e-2, 1e-3, true);
  }
}

TEST(CudaAttention, CudnnSegmentsWithATightSequenceBound) {
  SKIP_WITHOUT_CUDNN();
  cuda::CudnnAttention att;
  const Case c{2, 300, 300, 28, 4, 128, 0, 0, true};
  const Inputs in = make_inputs(c, 650, true);
  int64_t runs = 0;
  for (size_t idx = 0; idx < in.seg.size(); ++idx) runs += idx % 300 == 0 || in.seg[idx] != in.seg[idx - 1];
  Result r;
  if (run_cudnn(att, c, in, true, true, &r, runs))
    compare(c, r, cpu_reference(c, in, true), 1e-2, 1e-3, true);
}

TEST(CudaAttention, CudnnGenerationShape) {
  SKIP_WITHOUT_CUDNN();
  cuda::CudnnAttention att;
  uint64_t seed = 700;
  for (const Case& c : generation_cases()) {
    const Inputs in = make_inputs(c, seed++, true);
    const Result want = cpu_reference(c, in, false);
    Result r;
    if (run_cudnn(att, c, in, false, true, &r)) compare(c, r, want, 1e-2, 1e-3, false);
    Result no_lse;
    if (run_cudnn(att, c, in, false, false, &no_lse))
      expect_close(c, "out without lse", no_lse.out, want.out, 1e-2);
  }
}

TEST(CudaAttention, CudnnRefusalsSayWhy) {
  SKIP_WITHOUT_CUDNN();
  cuda::CudnnAttention att;
  EXPECT_NE(att.backward_unsupported(problem_of(Case{2, 64, 64, 4, 4, 64, 0, 0, true}, true)).find("packed"),
            std::string::npos);
  cuda::CudnnAttentionProblem pb = problem_of(Case{2, 4, 10, 4, 4, 64, 1, 0, false}, true);
  EXPECT_NE(att.forward_unsupported(pb).find("q_offset"), std::string::npos) << att.forward_unsupported(pb);
  pb = problem_of(Case{2, 16, 16, 4, 4, 60, 0, 0, false}, true);
  EXPECT_NE(att.forward_unsupported(pb).find("head dim"), std::string::npos) << att.forward_unsupported(pb);
}

TEST(CudaAttention, CudnnBackwardIsBitwiseRepeatable) {
  SKIP_WITHOUT_CUDNN();
  cuda::CudnnAttention att;
  for (const Case& c :
       {Case{2, 300, 300, 28, 4, 128, 0, 0, false}, Case{2, 257, 257, 8, 2, 64, 0, 0, false}}) {
    const Inputs in = make_inputs(c, 800, true);
    Result a, b;
    if (!run_cudnn(att, c, in, true, true, &a) || !run_cudnn(att, c, in, true, true, &b)) continue;
    EXPECT_EQ(a.dq, b.dq) << c.name();
    EXPECT_EQ(a.dk, b.dk) << c.name();
    EXPECT_EQ(a.dv, b.dv) << c.name();
  }
}

// train.deterministic = false: cuDNN's non-deterministic backward (dQ accumulated with atomics) gives the CPU's
// gradients within the same bf16 tolerances, and its workspace does not grow with tokens^2 x heads.
TEST(CudaAttention, CudnnNonDeterministicBackwardMatchesCpuWithASmallerWorkspace) {
  SKIP_WITHOUT_CUDNN();
  cuda::CudnnAttention att;
  uint64_t seed = 900;
  for (const Case& c : training_cases({17, 129, 300})) {
    if (c.segments) continue;  // packed rows take the own backward either way
    const Inputs in = make_inputs(c, seed++, true);
    Result r;
    if (!run_cudnn(att, c, in, true, true, &r, 0, false)) continue;
    compare(c, r, cpu_reference(c, in, true), 1e-2, 1e-3, true);
  }
  const Case big{1, 8192, 8192, 28, 4, 128, 0, 0, false};
  cuda::CudnnAttentionProblem det = problem_of(big, true), nondet = det;
  nondet.deterministic = false;
  ASSERT_EQ(att.backward_unsupported(det), "");
  ASSERT_EQ(att.backward_unsupported(nondet), "");
  const size_t wd = att.backward_workspace_bytes(det), wn = att.backward_workspace_bytes(nondet);
  std::cout << "cuDNN backward workspace at 8192 tokens x 28 heads: deterministic " << wd << " bytes, "
            << "non-deterministic " << wn << " bytes\n";
  EXPECT_LE(wn, wd);
}

}  // namespace
}  // namespace engine::cuda_test
