// libFuzzer target: the safetensors parser (8-byte header length, JSON header, dtypes, shapes, offsets) on
// arbitrary bytes, then every tensor's view is touched, so an offset the parser let through past the end of
// the data would be an ASan report.
#include <cstring>
#include <vector>

#include "engine/io/safetensors.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engine::fuzz::expect_clean([&] {
    std::vector<std::byte> bytes(size);
    if (size != 0) std::memcpy(bytes.data(), data, size);
    engine::io::SafetensorsFile f = engine::io::SafetensorsFile::from_bytes(std::move(bytes), "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const engine::io::SafetensorsTensor& t : f.tensors()) {
      if (t.nbytes != 0)
        sink = sink ^ static_cast<uint8_t>(t.data[0]) ^ static_cast<uint8_t>(t.data[t.nbytes - 1]);
      (void)t.numel();
    }
  });
  return 0;
}
