#include "engine/runtime/kernel_table.hpp"

namespace engine::rt {

const char* kernel_name(Kernel k) {
  static constexpr const char* kNames[] = {"copy",
                                           "fill",
                                           "fill_from_scalar",
                                           "axpby",
                                           "add_broadcast",
                                           "mul_broadcast",
                                           "scale",
                                           "silu",
                                           "silu_backward",
                                           "swiglu",
                                           "swiglu_backward",
                                           "dropout",
                                           "rms_norm",
                                           "rms_norm_backward",
                                           "rope",
                                           "softmax",
                                           "softmax_backward",
                                           "embedding",
                                           "embedding_backward",
                                           "first_bad_id",
                                           "gemm",
                                           "sum_all",
                                           "sum_rows",
                                           "sum_rows_product",
                                           "sum_squares",
                                           "count_nonfinite",
                                           "cross_entropy",
                                           "cross_entropy_backward",
                                           "linear_cross_entropy",
                                           "linear_cross_entropy_backward",
                                           "attention",
                                           "attention_backward",
                                           "unary",
                                           "unary_backward",
                                           "binary",
                                           "where",
                                           "reduce_to",
                                           "foreach_update"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == static_cast<size_t>(Kernel::Count));
  return kNames[static_cast<size_t>(k)];
}

}  // namespace engine::rt
