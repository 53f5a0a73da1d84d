#include "kernels/cpu/cast.hpp"

#include <cstring>

#include "engine/core/float16.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace engine::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;

template <typename T>
float to_f32(T v) {
  if constexpr (std::is_same_v<T, Bf16>) {
    return bf16_to_f32(v.bits);
  } else if constexpr (std::is_same_v<T, F16>) {
    return f16_to_f32(v.bits);
  } else {
    return static_cast<float>(v);
  }
}

template <typename Src, typename Dst>
Dst convert_one(Src v) {
  if constexpr (std::is_same_v<Dst, Bf16>) {
    return Bf16{f32_to_bf16(to_f32(v))};
  } else if constexpr (std::is_same_v<Dst, F16>) {
    return F16{f32_to_f16(to_f32(v))};
  } else if constexpr (std::is_same_v<Src, Bf16> || std::is_same_v<Src, F16>) {
    return static_cast<Dst>(to_f32(v));
  } else {
    return static_cast<Dst>(v);  // float <-> double
  }
}

template <int Bytes>
struct Word;
template <>
struct Word<1> {
  using type = uint8_t;
};
template <>
struct Word<2> {
  using type = uint16_t;
};
template <>
struct Word<4> {
  using type = uint32_t;
};
template <>
struct Word<8> {
  using type = uint64_t;
};

template <int Bytes>
void copy_strided_typed(ThreadPool& pool, const void* src_v, const int64_t* shape, const int64_t* strides,
                        int ndim, void* dst_v) {
  using W = typename Word<Bytes>::type;
  const W* src = static_cast<const W*>(src_v);
  W* dst = static_cast<W*>(dst_v);
  // rows: all dims but the last; each row is a strided gather of `inner` elements.
  const int64_t inner = ndim > 0 ? shape[ndim - 1] : 1;
  const int64_t inner_stride = ndim > 0 ? strides[ndim - 1] : 1;
  int64_t rows = 1;
  for (int i = 0; i + 1 < ndim; ++i) rows *= shape[i];
  pool.parallel_for(rows, (kGrain + inner - 1) / (inner ? inner : 1), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t rem = r, off = 0;
      for (int i = ndim - 2; i >= 0; --i) {
        off += (rem % shape[i]) * strides[i];
        rem /= shape[i];
      }
      const W* s = src + off;
      W* d = dst + r * inner;
      if (inner_stride == 1) {
        std::memcpy(d, s, static_cast<size_t>(inner) * sizeof(W));
      } else {
        for (int64_t j = 0; j < inner; ++j) d[j] = s[j * inner_stride];
      }
    }
  });
}
}  // namespace

template <typename Src, typename Dst>
void convert(ThreadPool& pool, const Src* src, Dst* dst, int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = convert_one<Src, Dst>(src[i]);
  });
}

void copy_strided(ThreadPool& pool, const void* src, const int64_t* shape, const int64_t* strides, int ndim,
                  void* dst, int elem_bytes) {
  switch (elem_bytes) {
    case 1:
      copy_strided_typed<1>(pool, src, shape, strides, ndim, dst);
      return;
    case 2:
      copy_strided_typed<2>(pool, src, shape, strides, ndim, dst);
      return;
    case 4:
      copy_strided_typed<4>(pool, src, shape, strides, ndim, dst);
      return;
    case 8:
      copy_strided_typed<8>(pool, src, shape, strides, ndim, dst);
      return;
    default:
      break;
  }
  // Other element sizes do not occur among the engine's dtypes; copy them element by element, byte-wise.
  const auto* s = static_cast<const unsigned char*>(src);
  auto* d = static_cast<unsigned char*>(dst);
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  for (int64_t k = 0; k < n; ++k) {
    int64_t rem = k, off = 0;
    for (int i = ndim - 1; i >= 0; --i) {
      off += (rem % shape[i]) * strides[i];
      rem /= shape[i];
    }
    std::memcpy(d + k * elem_bytes, s + off * elem_bytes, static_cast<size_t>(elem_bytes));
  }
}

template void convert<Bf16, float>(ThreadPool&, const Bf16*, float*, int64_t);
template void convert<F16, float>(ThreadPool&, const F16*, float*, int64_t);
template void convert<float, Bf16>(ThreadPool&, const float*, Bf16*, int64_t);
template void convert<float, F16>(ThreadPool&, const float*, F16*, int64_t);
template void convert<float, double>(ThreadPool&, const float*, double*, int64_t);
template void convert<double, float>(ThreadPool&, const double*, float*, int64_t);
template void convert<Bf16, double>(ThreadPool&, const Bf16*, double*, int64_t);
template void convert<F16, double>(ThreadPool&, const F16*, double*, int64_t);
template void convert<double, Bf16>(ThreadPool&, const double*, Bf16*, int64_t);
template void convert<double, F16>(ThreadPool&, const double*, F16*, int64_t);

}  // namespace engine::cpu
