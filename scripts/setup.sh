#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for the engine: installs the Debian packages it builds with, then
# configures (Ninja) and builds into ./build. The CUDA toolkit, when present under /usr/local/cuda, is used
# for the CUDA backend (ENGINE_CUDA=AUTO); pass extra CMake flags in ENGINE_CMAKE_ARGS.
#   scripts/setup.sh                 install + configure + build
#   ENGINE_CMAKE_ARGS="-DENGINE_CUDA=OFF" scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost-dev           # Boost.DLL (header-only with BOOST_DLL_USE_STD_FS)
  nlohmann-json3-dev libspdlog-dev libfmt-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev
  libopenblas-dev        # CPU GEMM
  libpcre2-dev           # tokenizer pre-tokenizer regexes
  libicu-dev             # tokenizer Unicode normalization (NFC)
  libgloo-dev            # CPU collectives
  libdlpack-dev          # DLTensor, the raw tensor view of the plugin ABI
  libssl-dev             # SHA-256 (libcrypto) of the checkpoint manifest
  clang                  # libFuzzer targets (scripts/fuzz.sh) and the sanitizer build
  unzip                  # the cuDNN frontend headers out of their wheel
  libcurl4-openssl-dev   # Hub downloads (engine download, Hub ids on engine run)
  libssl-dev             # SHA-256 of downloaded LFS files (libcrypto)
  libprotobuf-dev protobuf-compiler  # TensorBoard event files (log.tensorboard)
  python3                # the fake Hub of tests/unit/hub (standard library only)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# cuDNN frontend C++ headers (header-only; inside the PyPI wheel nvidia-cudnn-frontend, folder include/) for
# the fused attention path, into the git-ignored third_party/cudnn_frontend/include. The build finds them
# there; without them it still builds and uses only the engine's own attention kernels.
cudnn_fe_version=1.32.0
cudnn_fe_dir=third_party/cudnn_frontend
if [[ ! -f $cudnn_fe_dir/include/cudnn_frontend.h ]]; then
  if python3 -m pip --version >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    if python3 -m pip download -q --no-deps "nvidia-cudnn-frontend==$cudnn_fe_version" -d "$tmp" &&
      mkdir -p "$cudnn_fe_dir" && unzip -q -o "$tmp"/nvidia_cudnn_frontend-*.whl 'include/*' -d "$cudnn_fe_dir"; then
      echo "setup: cuDNN frontend $cudnn_fe_version headers in $cudnn_fe_dir/include"
    else
      echo "setup: could not fetch the cuDNN frontend headers; attention uses the engine's own kernels only"
    fi
    rm -rf "$tmp"
  else
    echo "setup: no pip; skipping the cuDNN frontend headers (attention uses the engine's own kernels only)"
  fi
fi

build_dir=${ENGINE_BUILD_DIR:-build}
# ccache keys on paths relative to the checkout, so a fresh clone elsewhere (CI) reuses this machine's cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${ENGINE_CMAKE_ARGS:-}
cmake --build "$build_dir"
echo "setup: built into $build_dir (engine: $build_dir/bin/engine)"
