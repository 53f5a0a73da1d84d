// Model FLOPs (the MFU numerator) and the dense-attention test of packed batches.
#include <gtest/gtest.h>

#include "engine/train/forward_backward.hpp"
#include "engine/train/model_flops.hpp"

namespace engine::train {
namespace {

eng_model_info qwen7b() {
  eng_model_info i{};
  i.n_layers = 28;
  i.vocab_size = 152064;
  i.hidden_size = 3584;
  i.intermediate_size = 18944;
  i.n_heads = 28;
  i.n_kv_heads = 4;
  i.head_dim = 128;
  return i;
}

data::Batch batch(int32_t rows, int32_t seq, std::vector<int32_t> seg) {
  data::Batch b;
  b.rows = rows;
  b.seq_len = seq;
  b.segment_ids = std::move(seg);
  return b;
}

TEST(ModelFlops, MatmulParamsMatchThePeersCount) {
  // ../shared/peers/peer_lora.py: L * (2 d^2 + 2 d kv + 3 d I) + V d.
  const double d = 3584, kv = 512, I = 18944, V = 152064, L = 28;
  EXPECT_DOUBLE_EQ(matmul_params(qwen7b()), L * (2 * d * d + 2 * d * kv + 3 * d * I) + V * d);
}

TEST(ModelFlops, LoraCountsFourNFullSixNPlusCausalAttention) {
  const data::Batch b = batch(1, 2048, std::vector<int32_t>(2048, 1));
  const double n = matmul_params(qwen7b());
  const double attn = 3.5 * 2 * 2 * 2048.0 * 2048.0 * 0.5 * 3584 * 28;  // the peers' 3.5 x attn_fwd
  const std::vector<data::Batch> one{b};
  EXPECT_DOUBLE_EQ(step_model_flops(qwen7b(), false, one), 2048 * 4 * n + attn);
  EXPECT_DOUBLE_EQ(step_model_flops(qwen7b(), true, one), 2048 * 6 * n + attn);
}

TEST(ModelFlops, PackedRowsCountTheirSegmentsAndSkipPadding) {
  // One row: a sample of 3 tokens, one of 5, 2 padding.
  const std::vector<data::Batch> one{batch(1, 10, {1, 1, 1, 2, 2, 2, 2, 2, 0, 0})};
  eng_model_info i = qwen7b();
  const double n = matmul_params(i);
  const double attn = 3.5 * 2 * 2 * (4.5 + 12.5) * 3584 * 28;
  EXPECT_DOUBLE_EQ(step_model_flops(i, false, one), 8 * 4 * n + attn);
}

TEST(SingleSampleRows, OneSamplePerRowWithTrailingPaddingNeedsNoSegmentMask) {
  EXPECT_TRUE(single_sample_rows(batch(2, 4, {1, 1, 1, 1, 1, 1, 0, 0})));
  EXPECT_TRUE(single_sample_rows(batch(1, 3, {0, 0, 0})));  // an all-padding row
  EXPECT_FALSE(single_sample_rows(batch(1, 4, {1, 1, 2, 2})));
  EXPECT_FALSE(single_sample_rows(batch(2, 3, {1, 1, 1, 1, 2, 0})));
  EXPECT_FALSE(single_sample_rows(batch(1, 4, {1, 0, 1, 1})));
}

}  // namespace
}  // namespace engine::train
