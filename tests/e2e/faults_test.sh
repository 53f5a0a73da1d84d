#!/usr/bin/env bash
# Faults injected into tiny LoRA runs (issue 15):
#  1. a write failure at each point of a checkpoint save (ENGINE_FAULT_CHECKPOINT=<point>): the run exits 1
#     naming the point and the previous checkpoint, which still verifies and resumes;
#  2. NaN in the loss and +Inf in a gradient (ENGINE_FAULT_NONFINITE): skipped and counted; a streak of
#     train.max_nonfinite_steps ends the run (exit 1) with a checkpoint holding the last good weights;
#  3. a plugin failing mid-run (tests/plugins/fake_peft.cpp built as faulty_peft: an error status, a std::exception, a throw of
#     an int): caught at the ABI edge, the run stops (exit 1) with the plugin's message and a checkpoint of the
#     last completed step, from which it resumes.
# Usage: faults_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
engine="$build/bin/engine"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
unset ENGINE_PLUGIN_PATH ENGINE_FAULT_CHECKPOINT ENGINE_FAULT_NONFINITE
recipe="$src/recipes/tiny_lora.toml"
common=(--set model.path=model --set checkpoint.save_every=1 --set train.eval_every=0 --set log.every=1)

faults=0 failed=0
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
has() { grep -qF -- "$2" "$1" || { fail "$1 lacks: $2"; sed 's/^/  | /' "$1" | tail -n 8; }; }
runs() { "$engine" run "$recipe" "${common[@]}" "$@"; }

"$engine" init-model --arch qwen2 --preset tiny --out model >/dev/null 2>&1 || { echo "init-model failed"; exit 1; }
runs --set train.output_dir=base --set train.max_steps=3 --set checkpoint.keep_last=2 >/dev/null 2>&1 ||
  { echo "the base run failed"; exit 1; }
rm -rf base/checkpoint-3 && echo checkpoint-2 >base/latest  # a run at step 2, with checkpoint-1 and -2

# 1. checkpoint write failures
for point in weights optimizer recipe trainer_state manifest fsync rename latest prune; do
  faults=$((faults + 1))
  out="ck_$point"
  cp -r base "$out"
  ENGINE_FAULT_CHECKPOINT=$point runs --set train.output_dir="$out" --set train.max_steps=3 \
    --set checkpoint.keep_last=2 >"$out.log" 2>&1
  rc=$?
  [[ $rc -eq 1 ]] || fail "$point: exit $rc, want 1"
  has "$out.log" "saving the checkpoint of step 3 failed: injected fault at $point"
  has "$out.log" "the previous checkpoint $tmp/$out/checkpoint-2 is intact"
  # Nothing half-written is ever taken for a checkpoint: resuming verifies the newest complete one and
  # continues. Up to `rename` the new one is not in place (resume trains step 3 from checkpoint-2); after it
  # (latest, prune) checkpoint-3 is complete and is what a resume finds.
  runs --set train.output_dir="$out" --set train.max_steps=3 --set checkpoint.keep_last=2 >"$out.resume" 2>&1 ||
    fail "$point: the resume after the fault failed"
  case $point in
    latest | prune) has "$out.resume" "already reached step 3 of 3" ;;
    *) has "$out.resume" "resumed from $tmp/$out/checkpoint-2 at step 2/3" ;;
  esac
done

# 2. non-finite loss and gradients
faults=$((faults + 1))
ENGINE_FAULT_NONFINITE=loss:2 runs --set train.output_dir=nan_once --set train.max_steps=3 >nan_once.log 2>&1 ||
  fail "a single NaN loss ended the run"
has nan_once.log "step 2: non-finite loss or gradient norm, step skipped (1 in a row)"
has nan_once.log "1 non-finite steps skipped"
grep -q '"skipped":true,"step":2,' nan_once/metrics.jsonl || fail "metrics.jsonl does not mark step 2 skipped"
faults=$((faults + 3))
ENGINE_FAULT_NONFINITE=grad:2,3,4 runs --set train.output_dir=inf_streak --set train.max_steps=10 \
  --set train.max_nonfinite_steps=3 --set checkpoint.keep_last=0 >inf_streak.log 2>&1
rc=$?
[[ $rc -eq 1 ]] || fail "an Inf-gradient streak: exit $rc, want 1"
has inf_streak.log "3 steps in a row had a non-finite loss or gradient norm"
[[ $(cat inf_streak/latest) == checkpoint-4 ]] || fail "the streak's checkpoint is not checkpoint-4"
cmp -s inf_streak/checkpoint-4/adapter_model.safetensors inf_streak/checkpoint-1/adapter_model.safetensors ||
  fail "the checkpoint after the streak does not hold the weights of step 1 (the last good step)"

# 3. a plugin failing mid-run: 14 linear layers per forward, so call 30 is in step 3's forward. The recipe is
# tiny_lora's with a [peft] section of faulty_peft's own options.
export ENGINE_PLUGIN_PATH="$build/tests/plugins/faults"
python3 - "$recipe" faulty.toml <<'PY'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r"\[peft\][^\[]*", '[peft]\nplugin = "faulty_peft"\n\n', text)
text = text.replace('"../data/', '"%s/data/' % sys.argv[1].rsplit("/recipes/", 1)[0])
open(sys.argv[2], "w").write(text)
PY
recipe="$tmp/faulty.toml"
for mode in error std unknown; do
  faults=$((faults + 1))
  out="plugin_$mode"
  runs --set train.output_dir="$out" --set train.max_steps=5 --set peft.plugin=faulty_peft \
    --set peft.fail_at_call=30 --set peft.fail_mode=$mode --set checkpoint.save_every=0 >"$out.log" 2>&1
  rc=$?
  [[ $rc -eq 1 ]] || fail "faulty_peft ($mode): exit $rc, want 1"
  case $mode in
    error) has "$out.log" "faulty_peft: injected failure at call 30" ;;
    std) has "$out.log" "faulty_peft: injected failure at call 30 (std::runtime_error)" ;;
    unknown) has "$out.log" "a plugin threw an exception of unknown type" ;;
  esac
  has "$out.log" "step 3 failed"
  has "$out.log" "$tmp/$out/checkpoint-2 holds the state after step 2"
  [[ -f $out/checkpoint-2/manifest.json ]] || fail "faulty_peft ($mode): no checkpoint-2"
done
# the stopped run resumes from that checkpoint (with the fault moved past the end, it finishes)
runs --set train.output_dir=plugin_error --set train.max_steps=5 --set peft.plugin=faulty_peft \
  --set peft.fail_at_call=1000 --set checkpoint.save_every=0 >plugin_resume.log 2>&1 || fail "resume after the plugin error"
has plugin_resume.log "resumed from $tmp/plugin_error/checkpoint-2 at step 2/5"
has plugin_resume.log "trained steps 3..5"

echo "$faults faults injected, $failed failed"
[[ $failed -eq 0 ]]
