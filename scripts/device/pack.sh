#!/usr/bin/env bash
# Packs a build made here (Debian 12) for the GPU machine of the device tool (Ubuntu 24.04 with the CUDA
# toolkit, cuDNN and PyTorch, none of the engine's Debian libraries): the binaries, plugins and ctest files of
# the build tree, and every shared library they load that is neither glibc/libstdc++ nor CUDA's, into
# .device/pack.tgz (git-ignored; the device tool's `carry` takes it). Run there with scripts/device/run.sh.
#   scripts/device/pack.sh            # packs ./build
#   ENGINE_PACK_TESTS="cuda_rope_test cuda_ops_test" scripts/device/pack.sh   # engine, plugins and these tests
# The device tool carries at most 64 MiB: the whole suite (40 test binaries of ~10 MB, each with the CUDA
# kernels' fatbins linked in) does not fit, so name the tests a call needs.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${ENGINE_BUILD_DIR:-build}
stage=.device/stage
rm -rf "$stage" .device/pack.tgz
mkdir -p "$stage/lib"

# Executables and plugins of the build tree, and the ctest files that name them.
if [[ -n ${ENGINE_PACK_TESTS:-} ]]; then
  bins=("$build/bin/engine")
  for t in $ENGINE_PACK_TESTS; do bins+=("$build/bin/$t"); done
  mapfile -t -O ${#bins[@]} bins < <(find "$build/lib" "$build/tests" -type f -name '*.so')
else
  mapfile -t bins < <(find "$build/bin" "$build/lib" -type f \( -perm -u+x -o -name '*.so' \) 2>/dev/null;
    find "$build/tests" -type f -name '*.so')
fi
find "$build" -name CTestTestfile.cmake -o -name '*.json' -path '*/tests/*' | while read -r f; do
  mkdir -p "$stage/$(dirname "$f")" && cp "$f" "$stage/$f"
done
for f in "${bins[@]}"; do mkdir -p "$stage/$(dirname "$f")" && cp "$f" "$stage/$f"; done
strip --strip-unneeded "$stage/$build/bin/"* 2>/dev/null || true

# Libraries the GPU machine lacks: everything ldd resolves except the C/C++ runtime and CUDA's own.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcudnn|libnccl|libnvrtc|libnvJitLink|libcufft|libcurand|libcusparse|libcusolver)'
for f in "${bins[@]}"; do ldd "$f" 2>/dev/null | awk '/=> \//{print $1, $3}'; done | sort -u |
  while read -r name path; do
    [[ $name =~ $skip ]] && continue
    cp -L "$path" "$stage/lib/$name"
  done
# The tests read ../shared/fixtures (the real Qwen tokenizer); the device tool does not send ../shared.
if [[ -d ../shared/fixtures ]]; then mkdir -p "$stage/shared" && cp -r ../shared/fixtures "$stage/shared/"; fi
tar -C "$stage" -cf - . | xz -T2 -6 > .device/pack.tgz
rm -rf "$stage"
echo "pack: .device/pack.tgz $(du -h .device/pack.tgz | cut -f1) (binaries of $build and $(xz -dc .device/pack.tgz | tar -t | grep -c '^./lib/.') libraries)"
