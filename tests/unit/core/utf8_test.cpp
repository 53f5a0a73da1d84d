// engine/core/utf8.cpp: the rules of Rust's str::from_utf8, and the maximal invalid subparts a lossy decoder
// replaces.
#include "engine/core/utf8.hpp"

#include <gtest/gtest.h>

#include <string>

namespace engine {
namespace {

TEST(Utf8, AcceptsEveryLengthOfSequence) {
  const std::string text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 and a longer ASCII tail past eight bytes";
  EXPECT_EQ(first_invalid_utf8(text), text.size());
  EXPECT_TRUE(is_valid_utf8(text));
  EXPECT_TRUE(is_valid_utf8(""));
}

TEST(Utf8, FindsTheFirstInvalidSequence) {
  EXPECT_EQ(first_invalid_utf8("ab\xC0\xAF"), 2u);               // overlong '/'
  EXPECT_EQ(first_invalid_utf8("abcdefghij\xED\xA0\x80"), 10u);  // a surrogate, after the 8-byte fast path
  EXPECT_EQ(first_invalid_utf8("\xF4\x90\x80\x80"), 0u);         // above U+10FFFF
  EXPECT_EQ(first_invalid_utf8("x\xE2\x82"), 1u);                // truncated
  EXPECT_EQ(first_invalid_utf8("\x80"), 0u);                     // a lone continuation byte
  EXPECT_FALSE(is_valid_utf8("\xFF"));
}

TEST(Utf8, SequenceLengthAndMaximalInvalidSubpart) {
  size_t bad = 0;
  EXPECT_EQ(utf8_sequence_length("\xE2\x82\xAC", 0, bad), 3u);
  EXPECT_EQ(utf8_sequence_length("\xE2\x82", 0, bad), 0u);
  EXPECT_EQ(bad, 2u);  // E2 82 is one unit: a truncated sequence
  EXPECT_EQ(utf8_sequence_length("\xE2\x28\xA1", 0, bad), 0u);
  EXPECT_EQ(bad, 1u);  // E2 alone: 28 cannot continue it
  EXPECT_EQ(utf8_sequence_length("\xC0\xAF", 0, bad), 0u);
  EXPECT_EQ(bad, 1u);  // C0 never starts a sequence
}

}  // namespace
}  // namespace engine
