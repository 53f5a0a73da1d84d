#!/usr/bin/env bash
# On the GPU machine, in the repository root that the device tool copied: unpacks .device/pack.tgz (made here by
# scripts/device/pack.sh), points the dynamic loader at the carried libraries and at PyTorch's cuDNN and NCCL,
# links /work/main (where the build's ctest files say the tree is) to this copy, then runs the command given.
#   scripts/device/run.sh ctest --test-dir build -L cuda --output-on-failure
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
xz -dc .device/pack.tgz | tar -x -C "$root"
nv=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH="$root/lib:$nv/cudnn/lib:$nv/nccl/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export NCCL_NVLS_ENABLE=0
if [[ $root != /work/main ]]; then mkdir -p /work && rm -rf /work/main && ln -s "$root" /work/main; fi
[[ -e /work/shared ]] || ln -s "$root/shared" /work/shared 2>/dev/null || true
"$@"
