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
cmake -S "$src/examples/third_party_plugin" -B "$tmp/example" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  "${launcher[@]}" >/dev/null
cmake --build "$tmp/example" >/dev/null
so="$tmp/example/plugins/libsgd_momentum.so"
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
echo "$list" | grep -q '"name": "sgd_momentum"' || { echo "sgd_momentum not listed: $list"; exit 1; }
echo "$list" | grep -q '"kind": "optimizer"'
"$engine" plugins describe sgd_momentum | grep -q 'momentum (number, default 0.9'
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
first=$(head -n 1 "$tmp/run/metrics.jsonl" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
last=$(grep -v eval_loss "$tmp/run/metrics.jsonl" | tail -n 1 | sed 's/.*"loss":\([0-9.]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }' ||
  { echo "loss did not fall with sgd_momentum: $first -> $last"; cat "$tmp/run.log"; exit 1; }
# The installed engine finds nothing in the current directory and the example only through the path.
installed=$(cd "$tmp/example/plugins" && ENGINE_PLUGIN_PATH= "$tmp/prefix/bin/engine" plugins --json)
[[ "$installed" == "[]" || "$installed" != *sgd_momentum* ]] || { echo "found in the current directory"; exit 1; }
"$tmp/prefix/bin/engine" --version | grep -q "plugin ABI"

after=$(sha256sum "$engine" | cut -d' ' -f1)
[[ "$before" == "$after" ]] || { echo "the engine binary changed"; exit 1; }
echo "ok: sgd_momentum built out of tree, listed, validated and trained with by the unchanged engine ($after); loss $first -> $last"
