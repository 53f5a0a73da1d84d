#!/usr/bin/env bash
# The out-of-tree parallel strategy examples/logging_parallel, built against an installed engine SDK only, used
# by the unchanged engine in `engine run` (docs/PLUGINS.md, "Parallel strategy"). The plugin checks the hook
# contract on every call and fails the run naming the hook that broke it; its report (hook counts, written
# through the host's file_write after every step) is checked here against the run's shape:
#  - world size 1, 2 blocks x 2 micro-batches x 6 steps: the counts; the losses and the adapter are bitwise
#    those of the same run without [parallel];
#  - an evaluation forward between steps and activation checkpointing keep the contract;
#  - a resume from checkpoint-4 calls setup again and steps 5 and 6 only, with the uninterrupted run's losses;
#    the strategy's own save_state/load_state are never called: a build that overrides them is refused by the
#    engine (it does not checkpoint a strategy's state yet), with that reason;
#  - a broken expectation (expect_micro_batches = 3 with grad_accum = 2) fails the run with the plugin's message
#    and exit code 1, through set_error;
#  - 2 ranks (--nproc-per-node 2: the engine runs a third-party strategy at any world size; without
#    ENG_PAR_CAP_SHARDS_PARAMS it broadcasts rank 0's trainable values once and leaves the gradients to the
#    strategy, which sums them): each rank's counts, and the losses of ddp at 2 ranks and (1e-5 relative) of
#    1 rank; built with param_owner (-1 for every parameter), the norms and losses of ddp too.
# Usage: logging_parallel_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap '[[ -n "${KEEP_TMP:-}" ]] || rm -rf "$tmp"' EXIT
engine="$build/bin/engine"
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src/examples/logging_parallel" -B "$tmp/par" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" "${launcher[@]}" >/dev/null
cmake --build "$tmp/par" >/dev/null
so="$tmp/par/plugins/liblogging_parallel.so"
exports=$(nm -D --defined-only "$so" | awk '{print $NF}' | grep -vE '^(_init|_fini|_edata|_end|__bss_start)$')
[[ "$exports" == "engine_plugin_negotiate" ]] || { echo "unexpected exports: $exports"; exit 1; }
export ENGINE_PLUGIN_PATH="$tmp/par/plugins"
grep -q 'expect_micro_batches (integer' <<<"$("$engine" plugins describe logging_parallel)"
[[ $("$engine" plugins 2>&1 | grep -c warning) -eq 0 ]] || { "$engine" plugins; exit 1; }

fail() { echo "$1"; [[ -f "${2:-}" ]] && cat "$2"; exit 1; }
# engine_run OUT LOG [flags]: the tiny LoRA recipe, 6 steps of 2 micro-batches of 4 rows, a checkpoint every 2
# steps, no evaluation, then FLAGS; its exit code. run: the same, which must succeed.
engine_run() {
  local out=$1 log=$2
  shift 2
  "$engine" run "$src/recipes/tiny_lora.toml" --set model.path="$tmp/model" --set train.output_dir="$out" \
    --set train.max_steps=6 --set train.grad_accum=2 --set train.eval_every=0 --set data.eval= \
    --set log.every=1 --set checkpoint.save_every=2 --set checkpoint.keep_last=0 "$@" >"$log" 2>&1
}
run() { engine_run "$@" || fail "engine run ${*:3} failed with exit code $?" "$2"; }
with_plugin() { echo --set parallel.plugin=logging_parallel --set "parallel.report=$1"; }
# count REPORT KEY: a count from the plugin's report (KEY a Python subscript such as ["grad_ready"]).
count() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }
# losses OUT: the training losses of metrics.jsonl, one a line, as written (full precision).
losses() { grep -v eval_loss "$1/metrics.jsonl" | sed 's/.*"loss":\([-0-9.e]*\).*/\1/'; }
# grad_norms OUT: the gradient norms of metrics.jsonl, one a line.
grad_norms() { grep -v eval_loss "$1/metrics.jsonl" | sed 's/.*"grad_norm":\([-0-9.e]*\).*/\1/'; }
# expect_counts REPORT STEPS MICRO RANK WORLD [OWNER]: the counts of a run of STEPS steps of MICRO micro-batches
# (OWNER: the number of param_owner calls, 0 unless given).
expect_counts() {
  local r=$1 steps=$2 micro=$3 rank=$4 world=$5 owner=${6:-0}
  local blocks trainable passes=$(($2 * $3))
  blocks=$(count "$r" '["blocks"]')
  trainable=$(count "$r" '["trainable"]')
  [[ $blocks -eq 2 && $trainable -eq 28 ]] || fail "$r: $blocks blocks, $trainable trainable (expected 2 and 28)" "$r"
  local want=(setup 1 rank "$rank" world_size "$world" micro_batches_per_step "$micro"
    forward_passes "$passes" backward_passes "$passes"
    'before_block"]["forward' $((passes * blocks)) 'after_block"]["forward' $((passes * blocks))
    'before_block"]["backward' $((passes * blocks)) 'after_block"]["backward' $((passes * blocks))
    grad_ready $((passes * trainable)) before_step "$steps" after_step "$steps" save_state 0 load_state 0 param_owner "$owner")
  for ((i = 0; i < ${#want[@]}; i += 2)); do
    local got
    got=$(count "$r" "[\"${want[i]}\"]")
    [[ "$got" == "${want[i + 1]}" ]] || fail "$r: ${want[i]} is $got, expected ${want[i + 1]}" "$r"
  done
}

# World size 1: the same run without and with the strategy.
run "$tmp/base" "$tmp/base.log"
run "$tmp/one" "$tmp/one.log" $(with_plugin "$tmp/one/hooks.json")
grep -q 'logging_parallel: step 6: 2 micro-batches, hooks so far .*, contract kept' "$tmp/one.log" || fail "no step line" "$tmp/one.log"
expect_counts "$tmp/one/hooks.json" 6 2 0 1
[[ $(losses "$tmp/base" | wc -l) -eq 6 ]] || fail "the baseline logged $(losses "$tmp/base" | wc -l) losses" "$tmp/base.log"
diff <(losses "$tmp/base") <(losses "$tmp/one") || fail "the losses differ from the run without [parallel]"
cmp "$tmp/base/checkpoint-6/adapter_model.safetensors" "$tmp/one/checkpoint-6/adapter_model.safetensors" ||
  fail "the adapter differs from the run without [parallel]"

# An evaluation (a forward pass without backward) after every step, and checkpointed blocks (recomputed inside
# their BACKWARD hooks), keep the contract.
"$engine" run "$src/recipes/tiny_lora.toml" --set model.path="$tmp/model" --set train.output_dir="$tmp/eval" \
  --set train.max_steps=3 --set train.eval_every=1 --set data.eval="$src/data/tiny/eval.jsonl#8" \
  --set train.activation_checkpointing=true \
  $(with_plugin "$tmp/eval/hooks.json") >"$tmp/eval.log" 2>&1 || fail "the run with evaluations failed" "$tmp/eval.log"
grep -q 'eval at step 2' "$tmp/eval.log" || fail "no evaluation ran" "$tmp/eval.log"
evals=$(($(count "$tmp/eval/hooks.json" '["forward_passes"]') - $(count "$tmp/eval/hooks.json" '["backward_passes"]')))
[[ $evals -gt 0 ]] || fail "no forward pass without backward was counted" "$tmp/eval/hooks.json"

# Resume: checkpoint-6 removed, the same command resumes from checkpoint-4 in a new process.
rm -rf "$tmp/one/checkpoint-6"
run "$tmp/one" "$tmp/resume.log" $(with_plugin "$tmp/one/hooks.json")
grep -q 'checkpoint-4' "$tmp/resume.log" || fail "the run did not resume from checkpoint-4" "$tmp/resume.log"
expect_counts "$tmp/one/hooks.json" 2 2 0 1
[[ "$(losses "$tmp/one" | tail -n 2)" == "$(losses "$tmp/base" | tail -n 2)" ]] ||
  fail "the resumed steps' losses differ: $(losses "$tmp/one" | tail -n 2 | tr '\n' ' ') vs $(losses "$tmp/base" | tail -n 2 | tr '\n' ' ')"
cmp "$tmp/base/checkpoint-6/adapter_model.safetensors" "$tmp/one/checkpoint-6/adapter_model.safetensors" ||
  fail "the resumed adapter differs from the uninterrupted run"
# A strategy with save_state/load_state is refused before training, with the reason.
cmake -S "$src/examples/logging_parallel" -B "$tmp/state" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DLOGGING_PARALLEL_WITH_STATE=ON "${launcher[@]}" >/dev/null
cmake --build "$tmp/state" >/dev/null
rc=0
ENGINE_PLUGIN_PATH="$tmp/state/plugins" engine_run "$tmp/state/out" "$tmp/state.log" $(with_plugin "$tmp/state/hooks.json") || rc=$?
[[ $rc -eq 1 ]] || fail "a strategy with save_state/load_state: exit code $rc, expected 1" "$tmp/state.log"
grep -q "parallel plugin 'logging_parallel' keeps state of its own (save_state/load_state), which this engine does not checkpoint yet" \
  "$tmp/state.log" || fail "the refusal does not say why" "$tmp/state.log"
[[ ! -e "$tmp/state/hooks.json" ]] || fail "the refused strategy stepped"

# A broken expectation fails the step through set_error, naming the hook and the numbers.
rc=0
engine_run "$tmp/broken" "$tmp/broken.log" $(with_plugin "$tmp/broken/hooks.json") --set parallel.expect_micro_batches=3 || rc=$?
[[ $rc -eq 1 ]] || fail "the broken expectation exited with $rc, expected 1" "$tmp/broken.log"
grep -q 'parallel plugin logging_parallel: before_step failed: logging_parallel: hook contract broken at before_step: 2 backward passes in this step, expect_micro_batches is 3' \
  "$tmp/broken.log" || fail "the failure does not name the hook" "$tmp/broken.log"

# Two ranks: 2 rows per rank and micro-batch (the same global batch), against ddp at 2 ranks and 1 rank.
run2() { run "$1" "$2" --nproc-per-node 2 "${@:3}" --set train.micro_batch_size=2; }
run2 "$tmp/ddp2" "$tmp/ddp2.log" --set parallel.plugin=ddp
run2 "$tmp/two" "$tmp/two.log" $(with_plugin "$tmp/two/hooks-{rank}.json")
for rank in 0 1; do expect_counts "$tmp/two/hooks-$rank.json" 6 2 "$rank" 2; done
paste <(losses "$tmp/ddp2") <(losses "$tmp/two") <(losses "$tmp/base") | awk '
  { d = ($1 - $2) / $1; if (d < 0) d = -d; if (d > 1e-6) { print "step " NR ": ddp " $1 ", logging_parallel " $2; bad = 1 }
    d = ($3 - $2) / $3; if (d < 0) d = -d; if (d > 1e-5) { print "step " NR ": 1 rank " $3 ", 2 ranks " $2; bad = 1 } }
  END { exit bad || NR != 6 }' || fail "the 2-rank losses differ"
# With param_owner (ABI 1.1) giving every parameter to every rank (-1), the engine takes its sharded-optimizer
# path (zero2's): such a gradient is whole on every rank and counts once in the norm, so norms and losses are
# ddp's (an engine that summed it over ranks would report sqrt(2) times the norm and clip differently).
cmake -S "$src/examples/logging_parallel" -B "$tmp/owner" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DLOGGING_PARALLEL_WITH_OWNER=ON "${launcher[@]}" >/dev/null
cmake --build "$tmp/owner" >/dev/null
ENGINE_PLUGIN_PATH="$tmp/owner/plugins" run2 "$tmp/owner2" "$tmp/owner2.log" $(with_plugin "$tmp/owner2/hooks-{rank}.json")
for rank in 0 1; do expect_counts "$tmp/owner2/hooks-$rank.json" 6 2 "$rank" 2 28; done
paste <(losses "$tmp/ddp2") <(losses "$tmp/owner2") <(grad_norms "$tmp/ddp2") <(grad_norms "$tmp/owner2") | awk '
  { d = ($1 - $2) / $1; if (d < 0) d = -d; e = ($3 - $4) / $3; if (e < 0) e = -e
    if (d > 1e-6 || e > 1e-6) { print "step " NR ": ddp loss " $1 " norm " $3 ", with param_owner " $2 " and " $4; bad = 1 } }
  END { exit bad || NR != 6 }' || fail "with param_owner the 2-rank losses or norms differ from ddp's" "$tmp/owner2.log"

echo "ok: logging_parallel built out of tree, its hook contract kept at 1 and 2 ranks, through a resume and an evaluation; losses $(losses "$tmp/base" | head -n 1) -> $(losses "$tmp/base" | tail -n 1) (1 rank, equal with and without it), $(losses "$tmp/two" | tail -n 1) at 2 ranks (ddp $(losses "$tmp/ddp2" | tail -n 1))"
