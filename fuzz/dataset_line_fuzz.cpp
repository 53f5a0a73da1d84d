// libFuzzer target: the dataset line parser (one JSONL record) in every format. The first byte picks the
// format (auto, alpaca, messages, text); the rest is the line.
#include "engine/data/dataset.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const char* kFormats[] = {"auto", "alpaca", "messages", "text"};
  engine::data::DatasetOptions options;
  options.format = engine::data::parse_dataset_format(kFormats[data[0] % 4]);
  const std::string line(engine::fuzz::as_text(data + 1, size - 1));
  engine::fuzz::expect_clean([&] {
    const engine::data::Example e = engine::data::parse_record(line, options, "fuzz.jsonl:1");
    if (!e.is_text && e.messages.empty()) (void)e.where;
  });
  return 0;
}
