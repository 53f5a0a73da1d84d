#!/usr/bin/env bash
# Installs the engine to a temporary prefix, builds examples/third_party_plugin against that prefix only, puts
# it on ENGINE_PLUGIN_PATH and shows that the unchanged engine binary (same sha256 before and after) lists the
# plugin, validates a recipe that uses it and trains with it (its loss falls). Usage: third_party_plugin_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
engine="$build/bin/engine"
before=$(sha256sum "$engine" | cut -d' ' -f1)

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/lib/cmake/EngineSDK/EngineSDKConfig.cmake"
test -f "$tmp/prefix/include/engine/cpp/sdk.hpp"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# build_example EXAMPLE DIR: examples/EXAMPLE configured and built against the installed prefix only, into DIR
build_example() {
  cmake -S "$src/examples/$1" -B "$2" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" "${launcher[@]}" >/dev/null
  cmake --build "$2" >/dev/null
}
# first_loss / last_loss OUTPUT_DIR: the training loss of the first and the last line of metrics.jsonl
first_loss() { grep -v eval_loss "$1/metrics.jsonl" | head -n 1 | sed 's/.*"loss":\([0-9.]*\).*/\1/'; }
last_loss() { grep -v eval_loss "$1/metrics.jsonl" | tail -n 1 | sed 's/.*"loss":\([0-9.]*\).*/\1/'; }
build_example third_party_plugin "$tmp/example"
so="$tmp/example/plugins/libsgd_momentum.so"
test -f "$tmp/example/plugins/liblion.so"
# Without DLPack (or nlohmann_json) on the machine, find_package(EngineSDK) says which Debian package to install.
for dep in dlpack:libdlpack-dev nlohmann_json:nlohmann-json3-dev; do
  if cmake -S "$src/examples/third_party_plugin" -B "$tmp/nodep" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    -DCMAKE_DISABLE_FIND_PACKAGE_${dep%%:*}=ON >"$tmp/nodep.log" 2>&1; then
    echo "configured without ${dep%%:*}"; exit 1
  fi
  grep -q "${dep#*:}" "$tmp/nodep.log" || { echo "no hint at ${dep#*:}:"; cat "$tmp/nodep.log"; exit 1; }
  rm -rf "$tmp/nodep"
done
test -f "$so"
exports=$(nm -D --defined-only "$so" | awk '{print $NF}' | grep -vE '^(_init|_fini|_edata|_end|__bss_start)$')
[[ "$exports" == "engine_plugin_negotiate" ]] || { echo "unexpected exports: $exports"; exit 1; }

export ENGINE_PLUGIN_PATH="$tmp/example/plugins:$build/tests/plugins/good"
list=$("$engine" plugins --json)
grep -q '"name": "sgd_momentum"' <<<"$list" || { echo "sgd_momentum not listed: $list"; exit 1; }
grep -q '"kind": "optimizer"' <<<"$list"
grep -q 'momentum (number, default 0.9' <<<"$("$engine" plugins describe sgd_momentum)"
"$engine" validate "$src/tests/data/e2e/sgd_momentum.toml"
# A misspelled option of the third-party plugin is caught with the plugin's own schema.
if "$engine" validate "$src/tests/data/e2e/sgd_momentum.toml" --set optimizer.momentun=0.5 >"$tmp/out" 2>&1; then
  echo "a misspelled option was accepted"; exit 1
fi
grep -q "did you mean 'momentum'" "$tmp/out"
# The unchanged engine trains with it: the tiny LoRA recipe with the third-party optimizer instead of adamw.
cat >"$tmp/run.toml" <<EOF
include = "$src/recipes/tiny_lora.toml"
[model]
path = "$tmp/model"
[optimizer]
plugin = "sgd_momentum"
lr = 0.05
momentum = 0.9
[train]
output_dir = "$tmp/run"
max_steps = 12
eval_every = 0
[log]
every = 1
EOF
"$engine" run "$tmp/run.toml" >"$tmp/run.log" 2>&1 || { rc=$?; cat "$tmp/run.log"; echo "engine run failed with exit code $rc"; exit 1; }
grep -q 'sgd_momentum' "$tmp/run/checkpoint-12/recipe.toml" || { echo "the checkpoint's recipe lacks sgd_momentum"; exit 1; }
first=$(first_loss "$tmp/run")
last=$(last_loss "$tmp/run")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }' ||
  { echo "loss did not fall with sgd_momentum: $first -> $last"; cat "$tmp/run.log"; exit 1; }
# lion (examples/third_party_plugin/lion.cpp, written with the op table's foreach_ entries only) trains the tiny
# LoRA recipe, and a run resumed from its step-6 checkpoint ends bitwise identical to the straight run (adapters,
# optimizer state, per-step losses): its momentum is saved and restored exactly.
grep -q '"name": "lion"' <<<"$list" || { echo "lion not listed: $list"; exit 1; }
lion_run() {  # OUTPUT_DIR LOG [extra args...]
  local out=$1 log=$2
  shift 2
  "$engine" run "$src/recipes/tiny_lora.toml" --set model.path="$tmp/model" --set optimizer.plugin=lion \
    --set optimizer.lr=0.01 --set optimizer.weight_decay=0.01 --set train.output_dir="$out" \
    --set train.max_steps=12 --set train.eval_every=0 --set log.every=1 --set checkpoint.save_every=6 \
    --set checkpoint.keep_last=0 "$@" >"$log" 2>&1 || { cat "$log"; echo "engine run with lion failed ($out)"; exit 1; }
}
lion_run "$tmp/lion" "$tmp/lion.log"
lfirst=$(first_loss "$tmp/lion")
llast=$(last_loss "$tmp/lion")
awk -v a="$lfirst" -v b="$llast" 'BEGIN { exit !(b < a - 0.5) }' ||
  { echo "loss did not fall with lion: $lfirst -> $llast"; cat "$tmp/lion.log"; exit 1; }
lion_run "$tmp/lion_resumed" "$tmp/lion_resumed.log" --resume "$tmp/lion/checkpoint-6"
grep -q "resumed from $tmp/lion/checkpoint-6" "$tmp/lion_resumed.log" || { cat "$tmp/lion_resumed.log"; exit 1; }
for f in adapter_model.safetensors optimizer.safetensors; do
  cmp -s "$tmp/lion/checkpoint-12/$f" "$tmp/lion_resumed/checkpoint-12/$f" ||
    { echo "lion: $f differs between the straight and the resumed run"; exit 1; }
done
# the resumed run logs steps 7..12; each loss equals the straight run's
diff <(grep -v eval_loss "$tmp/lion/metrics.jsonl" | tail -n 6 | sed 's/.*"loss":\([0-9.e-]*\).*/\1/') \
  <(grep -v eval_loss "$tmp/lion_resumed/metrics.jsonl" | tail -n 6 | sed 's/.*"loss":\([0-9.e-]*\).*/\1/') ||
  { echo "lion: the resumed run's losses differ"; exit 1; }
# The same plugin binary on CUDA, where a GPU is present (the engine must have been built with CUDA).
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  lion_run "$tmp/lion_cuda" "$tmp/lion_cuda.log" --set train.device=cuda
  cfirst=$(first_loss "$tmp/lion_cuda")
  clast=$(last_loss "$tmp/lion_cuda")
  awk -v a="$cfirst" -v b="$clast" 'BEGIN { exit !(b < a - 0.5) }' ||
    { echo "loss did not fall with lion on CUDA: $cfirst -> $clast"; cat "$tmp/lion_cuda.log"; exit 1; }
  lion_run "$tmp/lion_cuda_resumed" "$tmp/lion_cuda_resumed.log" --set train.device=cuda --resume "$tmp/lion_cuda/checkpoint-6"
  for f in adapter_model.safetensors optimizer.safetensors; do
    cmp -s "$tmp/lion_cuda/checkpoint-12/$f" "$tmp/lion_cuda_resumed/checkpoint-12/$f" ||
      { echo "lion on CUDA: $f differs between the straight and the resumed run"; exit 1; }
  done
  lion_cuda="lion on CUDA $cfirst -> $clast, resumed bitwise"
else
  echo "skip: no GPU (nvidia-smi lists none), so lion's CUDA run was not made"
  lion_cuda="lion on CUDA skipped (no GPU)"
fi

# The out-of-tree PEFT example (examples/ia3_peft), built against the same installed SDK, trains with the unchanged
# engine: only its vectors train (the engine froze the base), its checkpoint covers them, and the loss falls.
build_example ia3_peft "$tmp/ia3"
[[ $(nm -D --defined-only "$tmp/ia3/plugins/libia3.so" | awk '{print $NF}' | grep -c -vE '^(_init|_fini|_edata|_end|__bss_start)$') -eq 1 ]]
awk '/^\[peft\]/ { skip = 1; print "[peft]\nplugin = \"ia3\"\ntarget_modules = \"all-linear\"\n"; next }
     /^\[/ { skip = 0 } !skip' "$src/recipes/tiny_lora.toml" | sed "s|\"\.\./|\"$src/|g" >"$tmp/ia3.toml"
ENGINE_PLUGIN_PATH="$tmp/ia3/plugins" "$engine" run "$tmp/ia3.toml" --set model.path="$tmp/model" \
  --set train.output_dir="$tmp/ia3run" --set train.max_steps=12 --set train.eval_every=0 --set log.every=1 \
  --set checkpoint.save_every=6 --set optimizer.lr=0.05 >"$tmp/ia3.log" 2>&1 ||
  { cat "$tmp/ia3.log"; echo "engine run with ia3 failed"; exit 1; }
grep -q "ia3: scaling 14 linear layers" "$tmp/ia3.log" || { cat "$tmp/ia3.log"; exit 1; }
grep -q '"peft_type": "IA3"' "$tmp/ia3run/checkpoint-12/adapter_config.json"
trainable=$(sed -n 's/.* \([0-9]*\) trainable, ia3 adapters.*/\1/p' "$tmp/ia3.log")
[[ -n "$trainable" && "$trainable" -lt 5000 ]] || { echo "ia3 trains $trainable weights"; cat "$tmp/ia3.log"; exit 1; }
ifirst=$(first_loss "$tmp/ia3run")
ilast=$(last_loss "$tmp/ia3run")
awk -v a="$ifirst" -v b="$ilast" 'BEGIN { exit !(b < a) }' || { echo "loss did not fall with ia3: $ifirst -> $ilast"; exit 1; }

# The out-of-tree quantizer example (examples/int8_quantizer: int8 absmax with its own CPU kernel as a custom op)
# under the in-tree LoRA: the frozen projections are stored as int8, the adapters train, the loss falls.
build_example int8_quantizer "$tmp/int8"
cat >"$tmp/int8.toml" <<EOF
include = "$src/recipes/tiny_lora.toml"
[model]
path = "$tmp/model"
[quantizer]
plugin = "int8_absmax"
[train]
output_dir = "$tmp/int8run"
max_steps = 12
eval_every = 0
[log]
every = 1
EOF
ENGINE_PLUGIN_PATH="$tmp/int8/plugins" "$engine" run "$tmp/int8.toml" >"$tmp/int8.log" 2>&1 ||
  { cat "$tmp/int8.log"; echo "engine run with int8_absmax failed"; exit 1; }
qfirst=$(first_loss "$tmp/int8run")
qlast=$(last_loss "$tmp/int8run")
awk -v a="$qfirst" -v b="$qlast" 'BEGIN { exit !(b < a) }' ||
  { echo "loss did not fall with int8_absmax: $qfirst -> $qlast"; cat "$tmp/int8.log"; exit 1; }

# No warning from `engine plugins` for the examples built here (examples/logging_parallel is built, run at 1 and
# 2 ranks and checked by logging_parallel_test.sh).
[[ $(ENGINE_PLUGIN_PATH="$tmp/example/plugins:$tmp/ia3/plugins:$tmp/int8/plugins" "$engine" plugins 2>&1 | grep -c warning) -eq 0 ]]

# The installed engine finds nothing in the current directory and the example only through the path.
installed=$(cd "$tmp/example/plugins" && ENGINE_PLUGIN_PATH= "$tmp/prefix/bin/engine" plugins --json)
[[ "$installed" == "[]" || "$installed" != *sgd_momentum* ]] || { echo "found in the current directory"; exit 1; }
grep -q "plugin ABI" <<<"$("$tmp/prefix/bin/engine" --version)"

after=$(sha256sum "$engine" | cut -d' ' -f1)
[[ "$before" == "$after" ]] || { echo "the engine binary changed"; exit 1; }
echo "ok: sgd_momentum, lion, ia3 and int8_absmax built out of tree, listed, validated and trained with by the unchanged engine ($after); loss $first -> $last (sgd_momentum), $lfirst -> $llast (lion, resumed bitwise; $lion_cuda), $ifirst -> $ilast (ia3, $trainable weights), $qfirst -> $qlast (lora on int8_absmax)"
