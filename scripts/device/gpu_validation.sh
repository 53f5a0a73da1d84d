#!/usr/bin/env bash
# The GPU validation of the CUDA backend in one device call (run through scripts/device/run.sh, which unpacks
# the build packed by scripts/device/pack.sh). Writes its logs to $OUT (or ./gpu_out) and prints a summary:
#   1. ctest -L cuda: every CUDA test (kernels against the CPU, op nodes, training step, engine e2e on CUDA)
#   2. a random Qwen2.5-7B-shaped model (engine init-model) trained 20 steps with recipes/qwen7b_lora.toml
#   3. compute-sanitizer --tool memcheck over the kernel and op tests
#   4. the CPU suite (every test but the two that build an out-of-tree plugin with the Debian SDK packages)
# Each stage has its own time limit so that a slow one cannot take the others' time.
set -uo pipefail
out=${OUT:-$PWD/gpu_out}
mkdir -p "$out"
build=/work/main/build
nvidia-smi -L | tee "$out/gpu.txt"
stage() { echo "=== $1 ($(date +%T))"; }

stage "cuda tests"
# the cuda tests whose binaries were packed (scripts/device/pack.sh may carry a subset)
present=$(cd "$build/bin" && ls cuda_*_test 2>/dev/null | paste -sd'|')
timeout ${CUDA_TESTS_S:-150} ctest --test-dir "$build" -L cuda -R "^($present)\$" --output-on-failure -j 4 >"$out/cuda_tests.log" 2>&1
grep -E "tests passed|tests failed|Failed|\*\*\*" "$out/cuda_tests.log" | tail -20

stage "qwen2.5-7b lora, 20 steps"
model=/tmp/qwen7b_random
if [[ ! -f $model/config.json ]]; then
  timeout ${INIT_S:-120} "$build/bin/engine" init-model --arch qwen2 --config /work/main/tests/data/models/qwen2.5-7b-instruct/config.json \
    --out "$model" >"$out/init_model.log" 2>&1
  tail -3 "$out/init_model.log"
fi
timeout ${TRAIN_S:-150} "$build/bin/engine" run /work/main/recipes/qwen7b_lora.toml --set model.path=$model \
  --set data.train=/work/main/data/tiny/train.jsonl --set train.max_steps=20 --set train.micro_batch_size=1 \
  --set train.grad_accum=1 --set train.epochs=100 --set log.every=1 --set checkpoint.save_every=0 \
  --set train.output_dir=/tmp/qwen7b_out --set train.eval_every=0 >"$out/qwen7b.log" 2>&1
echo "exit $?"; tail -25 "$out/qwen7b.log"
cp /tmp/qwen7b_out/metrics.jsonl "$out/qwen7b_metrics.jsonl" 2>/dev/null

stage "compute-sanitizer memcheck"
for name in ${SANITIZE:-cuda_ops_test cuda_rmsnorm_test cuda_rope_test cuda_softmax_test cuda_cross_entropy_test}; do
  t=$build/bin/$name
  [[ -x $t ]] || continue
  timeout ${SANITIZER_S:-20} compute-sanitizer --tool memcheck --error-exitcode 9 "$t" >"$out/sanitizer_$(basename "$t").log" 2>&1
  echo "$(basename "$t"): exit $? $(grep -h 'ERROR SUMMARY' "$out/sanitizer_$(basename "$t").log" | tail -1)"
done

stage "cpu suite"
[[ -x $build/bin/runtime_ops_test ]] || { echo "(not packed: CI runs it)"; stage done; exit 0; }
timeout ${CPU_TESTS_S:-60} ctest --test-dir "$build" -LE cuda -E "e2e_third_party_plugin|e2e_bad_plugins" --output-on-failure -j 8 \
  >"$out/cpu_tests.log" 2>&1
grep -E "tests passed|tests failed|Failed|\*\*\*" "$out/cpu_tests.log" | tail -20
stage done
