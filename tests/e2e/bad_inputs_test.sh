#!/usr/bin/env bash
# The engine binary faced with bad input, one row per case: a setup (files made broken on purpose), the
# command, the exit code it must give and a fragment its output must hold. None may crash (a signal gives
# an exit code above 128 and fails its row), overwrite a user's file, or continue from damaged state.
# Covers issue 15's table and the model / tokenizer / dataset / recipe / plugin cases the README documents.
# Usage: bad_inputs_test.sh BUILD_DIR SOURCE_DIR [ROW_NAME_FILTER]
set -uo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd) filter=${3:-}
engine="$build/bin/engine"
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
unset ENGINE_PLUGIN_PATH ENGINE_ALLOW_INSECURE_PLUGINS ENGINE_FAULT_CHECKPOINT
recipe="$src/recipes/tiny_lora.toml"
fast=(--set train.max_steps=3 --set checkpoint.save_every=1 --set train.eval_every=0 --set log.every=1)

rows=0 failed=0
# row NAME EXIT_CODE FRAGMENT COMMAND...   (the command's stdout and stderr together must contain FRAGMENT)
row() {
  local name=$1 want=$2 fragment=$3
  shift 3
  [[ -n $filter && $name != *$filter* ]] && return 0
  rows=$((rows + 1))
  "$@" >"$tmp/out.$name" 2>&1
  local rc=$?
  if [[ $rc -ne $want ]] || ! grep -qF -- "$fragment" "$tmp/out.$name"; then
    failed=$((failed + 1))
    echo "FAIL $name: exit $rc (want $want), want output with: $fragment"
    echo "  command: $*"
    sed 's/^/  | /' "$tmp/out.$name" | tail -n 12
  else
    echo "ok   $name"
  fi
}
# check NAME CONDITION...: a side condition of a row (files untouched, ...)
check() {
  local name=$1
  shift
  [[ -n $filter && $name != *$filter* ]] && return 0
  if ! "$@"; then
    failed=$((failed + 1))
    echo "FAIL $name: $*"
  fi
}
# A JSON edit of a file in place: jedit FILE PYTHON_EXPRESSION_ON_j
jedit() { python3 -c "import json,sys; p=sys.argv[1]; j=json.load(open(p)); $2; json.dump(j, open(p,'w'))" "$1"; }
flip_byte() { python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=0x10; open(p,'wb').write(b)" "$1"; }

# --- a tiny model and a short run with a checkpoint per step -------------------------------------------------
"$engine" init-model --arch qwen2 --preset tiny --out model >/dev/null 2>&1 || { echo "init-model failed"; exit 1; }
"$engine" run "$recipe" --set model.path=model --set train.output_dir=run "${fast[@]}" >/dev/null 2>&1 ||
  { echo "the tiny run failed"; exit 1; }

# --- tokenizer.json ------------------------------------------------------------------------------------------
mkdir tok
cp model/tokenizer.json tok/neg.json && jedit tok/neg.json 'j["added_tokens"][0]["id"]=-1'
cp model/tokenizer.json tok/huge.json && jedit tok/huge.json 'j["added_tokens"][0]["id"]=2000000000'
cp model/tokenizer.json tok/float.json && jedit tok/float.json 'j["added_tokens"][0]["id"]=2e9'
cp model/tokenizer.json tok/vocab.json && jedit tok/vocab.json 'k=next(iter(j["model"]["vocab"])); j["model"]["vocab"][k]=4294967295'
echo '{"model": ' >tok/truncated.json
row tok_added_id_negative 1 'added token "<|endoftext|>" is -1' bash -c "echo hi | '$engine' tokenize --tokenizer tok/neg.json"
row tok_added_id_huge 1 'tok/huge.json: the id of added token "<|endoftext|>" is 2000000000; token ids must be in 0..16777215' \
  bash -c "echo hi | '$engine' tokenize --tokenizer tok/huge.json"
row tok_added_id_float 1 'is 2000000000.0, not an integer' bash -c "echo hi | '$engine' tokenize --tokenizer tok/float.json"
row tok_vocab_id_huge 1 'is 4294967295; token ids must be in 0..16777215' bash -c "echo hi | '$engine' tokenize --tokenizer tok/vocab.json"
row tok_not_json 1 'is not valid JSON' bash -c "echo hi | '$engine' tokenize --tokenizer tok/truncated.json"
row tok_missing 1 'cannot open tokenizer file' bash -c "echo hi | '$engine' tokenize --tokenizer tok/nothing.json"
row tok_not_utf8 1 'not valid UTF-8' bash -c "printf 'a\\xff' | '$engine' tokenize --tokenizer model"
cp -r model badtok_model && cp tok/neg.json badtok_model/tokenizer.json
row generate_bad_tokenizer 1 'is -1; token ids must be in' "$engine" generate --model badtok_model --prompt hi --max-new-tokens 2
row run_bad_tokenizer 1 'is -1; token ids must be in' "$engine" run "$recipe" --set model.path=badtok_model \
  --set train.output_dir=run_badtok "${fast[@]}"

# --- generate: an embedding with more rows than the tokenizer has ids (Qwen2.5: 152,064 rows, 151,665 ids) --
python3 -c "import json; c=json.load(open('model/config.json')); c['vocab_size']=8192; json.dump(c, open('wide.json','w'))"
"$engine" init-model --arch qwen2 --config wide.json --tokenizer model --dtype f32 --out wide_model >/dev/null 2>&1 ||
  echo "FAIL: init-model of the wide-vocabulary model"
row generate_padding_rows 0 '' "$engine" generate --model wide_model --prompt "hello" --max-new-tokens 24

# --- plugins -------------------------------------------------------------------------------------------------
plugins="$build/lib/engine/plugins"
mkdir -p pl/trunc pl/ww pl/wwdir pl/shadow
head -c 5000 "$plugins/libadamw.so" >pl/trunc/libadamw_cut.so
row plugin_truncated 0 'the file is truncated' env ENGINE_PLUGIN_PATH=pl/trunc "$engine" plugins
row plugin_truncated_others_load 0 'lora' env ENGINE_PLUGIN_PATH=pl/trunc "$engine" plugins
cp "$build/tests/plugins/good/libfake_sgd.so" pl/ww/ && chmod o+w pl/ww/libfake_sgd.so
row plugin_world_writable 0 'is world-writable, so any user could replace its code' env ENGINE_PLUGIN_PATH=pl/ww "$engine" plugins
row plugin_world_writable_allowed 0 'fake_sgd' env ENGINE_PLUGIN_PATH=pl/ww "$engine" --allow-insecure-plugins plugins --json
cp "$build/tests/plugins/good/libfake_sgd.so" pl/wwdir/ && chmod o+w pl/wwdir
row plugin_world_writable_folder 0 'is in the world-writable folder' env ENGINE_PLUGIN_PATH=pl/wwdir "$engine" plugins
chmod o-w pl/wwdir
cp "$plugins/liblora.so" pl/shadow/
row plugin_shadows_installed 0 "shadows the installed one at $plugins/liblora.so" env ENGINE_PLUGIN_PATH=pl/shadow "$engine" plugins
row plugin_shadow_in_run_log 0 "shadows the installed one" env ENGINE_PLUGIN_PATH=pl/shadow "$engine" validate "$recipe"
echo "not a plugin" >pl/trunc/libtext.so
row plugin_not_elf 0 'not a shared library (no ELF header)' env ENGINE_PLUGIN_PATH=pl/trunc "$engine" plugins
row plugin_unknown_name 2 "no optimizer plugin named 'adamx'; did you mean 'adamw'?" "$engine" validate "$recipe" --set optimizer.plugin=adamx

# --- model folders -------------------------------------------------------------------------------------------
mkdir users_model && cp model/model.safetensors model/tokenizer.json users_model/
row init_preset_never_overwrites 1 'the engine never writes over a user' "$engine" run "$recipe" --set model.path=users_model \
  --set train.output_dir=run_users "${fast[@]}"
check init_preset_never_overwrites cmp -s users_model/model.safetensors model/model.safetensors
check init_preset_never_overwrites cmp -s users_model/tokenizer.json model/tokenizer.json
check init_preset_never_overwrites test ! -e users_model/config.json
row model_path_not_folder 2 'model.path' "$engine" validate "$recipe" --set model.path=model/config.json --set model.init_preset=
mkdir no_config
row model_no_config 1 'config.json' "$engine" run "$recipe" --set model.path=no_config --set model.init_preset= \
  --set train.output_dir=run_noconfig "${fast[@]}"

# --- checkpoints ---------------------------------------------------------------------------------------------
# `run` has checkpoint-1..3; each case below starts from a copy whose newest is checkpoint-2, so a resume has
# step 3 left to train.
two_step_copy() { cp -r run "$1" && rm -rf "$1/checkpoint-3" && echo checkpoint-2 >"$1/latest"; }
two_step_copy run_noopt && rm run_noopt/checkpoint-2/optimizer.safetensors
row resume_missing_optimizer 1 'optimizer.safetensors is missing, so the optimizer would start from a fresh state' \
  "$engine" run "$recipe" --set model.path=model --set train.output_dir=run_noopt  "${fast[@]}"
row resume_missing_optimizer_accepted 0 'trained steps 3..3' "$engine" run "$recipe" --set model.path=model \
  --set train.output_dir=run_noopt  "${fast[@]}" --allow-missing-optimizer-state
two_step_copy run_flip_adapter && flip_byte run_flip_adapter/checkpoint-2/adapter_model.safetensors
row resume_flipped_adapter 1 'adapter_model.safetensors does not match manifest.json' "$engine" run "$recipe" \
  --set model.path=model --set train.output_dir=run_flip_adapter  "${fast[@]}"
row export_flipped_adapter 1 'adapter_model.safetensors does not match manifest.json' "$engine" export \
  --checkpoint run_flip_adapter/checkpoint-2 --merged --out merged_flip
check export_flipped_adapter test ! -e merged_flip
two_step_copy run_flip_opt && flip_byte run_flip_opt/checkpoint-2/optimizer.safetensors
row resume_flipped_optimizer 1 'optimizer.safetensors does not match manifest.json' "$engine" run "$recipe" \
  --set model.path=model --set train.output_dir=run_flip_opt  "${fast[@]}"
two_step_copy run_nomanifest && rm run_nomanifest/checkpoint-2/manifest.json
row resume_no_manifest 1 'manifest.json: no such file' "$engine" run "$recipe" --set model.path=model \
  --set train.output_dir=run_nomanifest  "${fast[@]}"
# A trainer_state.json edited by hand (its manifest entry rewritten to match, as a careless tool would): each
# numeric field that is not a number of its range is named with the file, never a raw std::stoull exception.
restamp() {  # restamp CHECKPOINT FILE: rewrite FILE's manifest entry to its current size and SHA-256
  python3 -c "import hashlib,json,sys; d,f=sys.argv[1:]; m=json.load(open(d+'/manifest.json')); b=open(d+'/'+f,'rb').read()
m['files'][f]={'bytes':len(b),'sha256':hashlib.sha256(b).hexdigest()}; json.dump(m,open(d+'/manifest.json','w'))" "$1" "$2"
}
two_step_copy run_bad_rng && jedit run_bad_rng/checkpoint-2/trainer_state.json 'j["rng_state"]="12abc"' &&
  restamp run_bad_rng/checkpoint-2 trainer_state.json
row resume_bad_rng_state 1 'trainer_state.json is malformed: key "rng_state" is "12abc", expected a decimal integer' \
  "$engine" run "$recipe" --set model.path=model --set train.output_dir=run_bad_rng "${fast[@]}"
two_step_copy run_bad_step && jedit run_bad_step/checkpoint-2/trainer_state.json 'j["step"]="2"' &&
  restamp run_bad_step/checkpoint-2 trainer_state.json
row resume_bad_step 1 'trainer_state.json is malformed: key "step" is "2", expected a whole number' \
  "$engine" run "$recipe" --set model.path=model --set train.output_dir=run_bad_step "${fast[@]}"
two_step_copy run_stale_latest && echo checkpoint-1 >run_stale_latest/latest
row resume_newest_complete 0 'resumed from' "$engine" run "$recipe" --set model.path=model \
  --set train.output_dir=run_stale_latest  "${fast[@]}"
check resume_newest_complete grep -q "resumed from .*run_stale_latest/checkpoint-2 at step 2" "$tmp/out.resume_newest_complete"
row resume_dir_missing 2 '--resume nowhere: no such directory' "$engine" run "$recipe" --resume nowhere

# --- recipes: validate refuses what run would refuse ---------------------------------------------------------
v=("$engine" validate "$recipe")
row recipe_lr_nan 2 "'nan' is not a finite number" "${v[@]}" --set optimizer.lr=nan
printf 'include = "%s"\n[optimizer]\nplugin = "adamw"\nlr = nan\n' "$recipe" >lr_nan.toml
row recipe_lr_nan_toml 2 'must be a finite number' "$engine" validate lr_nan.toml
row recipe_r_int64_max 2 'peft.r must be at most 65536, got 9223372036854775807' "${v[@]}" --set peft.r=9223372036854775807
printf 'include = "%s"\n[peft]\nplugin = "lora"\nr = 9223372036854775807\n' "$recipe" >r_max.toml
row recipe_r_int64_max_toml 2 'must be at most 65536, got 9223372036854775807' "$engine" validate r_max.toml
row recipe_max_seq_len_huge 2 'data.max_seq_len must be at most 1048576, got 1000000000' "${v[@]}" --set data.max_seq_len=1000000000
row recipe_max_seq_len_1 2 'data.max_seq_len must be at least 2, got 1' "${v[@]}" --set data.max_seq_len=1
row recipe_bad_target_regex 2 "target_modules '(' is not a valid regular expression" "${v[@]}" --set 'peft.target_modules=('
row recipe_lr0_min_lr 2 'scheduler.min_lr (0.001) is above optimizer.lr (0.0)' "${v[@]}" --set optimizer.lr=0
row recipe_micro_batch_huge 2 'does not fit in the memory of' "${v[@]}" --set train.micro_batch_size=1000000
row recipe_output_dir_file 2 'is a file, expected a folder' "${v[@]}" --set train.output_dir=model/config.json
row recipe_output_dir_empty 2 'train.output_dir is empty' "${v[@]}" --set train.output_dir=
if [[ $(id -u) -ne 0 ]]; then  # root writes anywhere: a read-only folder is only refused for other users
  mkdir ro && chmod a-w ro
  row recipe_output_dir_readonly 2 'is not writable' "${v[@]}" --set train.output_dir=ro/out
fi
row recipe_data_train_missing 2 'does not exist' "${v[@]}" --set data.train=nothing.jsonl
row recipe_is_folder 2 'is a folder, expected a file' "$engine" validate model
printf 'include = "%s"\n' "$tmp/model" >inc_folder.toml
row recipe_include_folder 2 'is a folder, expected a file' "$engine" validate inc_folder.toml
row recipe_unknown_key 2 "unknown key" "${v[@]}" --set train.max_stepz=3
row recipe_wrong_type 2 "'\"4\"' is not an integer" "${v[@]}" --set train.micro_batch_size='"4"'
printf 'include = "%s"\n[train]\nmicro_batch_size = "4"\n' "$recipe" >wrong_type.toml
row recipe_wrong_type_toml 2 'must be an integer, got the string "4" (remove the quotes)' "$engine" validate wrong_type.toml
printf '[model\n' >syntax.toml
row recipe_syntax 2 'syntax.toml:' "$engine" validate syntax.toml

# --- datasets ------------------------------------------------------------------------------------------------
printf '{"text": "a fine line"}\n{"text": \n' >broken.jsonl
row data_malformed_line 1 'broken.jsonl' "$engine" run "$recipe" --set model.path=model --set data.train=broken.jsonl \
  --set data.eval= --set data.format=text --set train.output_dir=run_broken "${fast[@]}"

# --- QLoRA: nf4 and adamw8bit -------------------------------------------------------------------------------
qlora="$src/recipes/tiny_qlora.toml"
row nf4_blocksize_odd 2 'nf4: blocksize must be an even whole number in [2, 4096] (bitsandbytes uses 64), got 63' \
  "$engine" validate "$qlora" --set quantizer.blocksize=63
row nf4_unknown_option 2 "unknown key 'block_size' in [quantizer]; did you mean 'blocksize'?" "$engine" validate "$qlora" --set quantizer.block_size=64
row adamw8bit_min_size_negative 2 'optimizer.min_8bit_size must be at least 0, got -1' "$engine" validate "$qlora" \
  --set optimizer.min_8bit_size=-1
# A bitsandbytes-4bit checkpoint whose quant_state says fp4 (it crashed with SIGSEGV: the session, torn down
# part-way, freed the HostSession before the quantizer that detaches from it).
cp -r "$src/tests/data/quant/bnb4bit_tiny" bnb_fp4 && cp model/tokenizer.json bnb_fp4/
python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); i=b.find(b'\"nf4\"', 8+int.from_bytes(b[:8],'little'))
assert i > 0; b[i:i+5]=b'\"fp4\"'; open(p,'wb').write(b)" bnb_fp4/model.safetensors
row nf4_prequantized_fp4 1 "is quantized as 'fp4'" "$engine" run "$qlora" --set model.path=bnb_fp4 --set model.init_preset= \
  --set train.output_dir=run_fp4 "${fast[@]}"
head -c 100000 "$src/tests/data/quant/bnb4bit_tiny/model.safetensors" >bnb_fp4/model.safetensors  # cut short
row nf4_prequantized_truncated 1 'model.safetensors' "$engine" run "$qlora" --set model.path=bnb_fp4 --set model.init_preset= \
  --set train.output_dir=run_cut "${fast[@]}"
# Resuming an adamw checkpoint with adamw8bit: the state names do not match; refused, never a fresh state.
two_step_copy run_other_opt
row resume_other_optimizer 1 "optimizer 'adamw8bit' load_state failed" "$engine" run "$recipe" --set model.path=model \
  --set train.output_dir=run_other_opt "${fast[@]}" --set optimizer.plugin=adamw8bit

# engine plan --device-memory: a number of GiB above 0, and only for a recipe that may train on a GPU.
row plan_device_memory_not_a_number 2 "--device-memory must be a number of GiB above 0, got 'x'" "$engine" plan "$recipe" \
  --device-memory x
row plan_device_memory_cpu_recipe 2 '--device-memory plans for a CUDA GPU, but the recipe trains on the CPU' \
  "$engine" plan "$recipe" --set train.device=cpu --device-memory 24
# A config.json field of the wrong type is named with its key (it was a bare json type_error).
mkdir -p badtype_cfg && sed 's/"tie_word_embeddings": false/"tie_word_embeddings": "yes"/' \
  "$src/tests/data/models/qwen2.5-7b-instruct/config.json" >badtype_cfg/config.json
row plan_config_wrong_type 1 "config.json: 'tie_word_embeddings' must be true or false, got \"yes\"" "$engine" plan \
  "$src/recipes/qwen7b_lora.toml" --set model.path=badtype_cfg --device-memory 24
# train.deterministic = false only has a meaning on CUDA: refused on the CPU, by validate and by a run on auto.
row deterministic_false_on_cpu 2 'train.deterministic = false with train.device = "cpu"' "${v[@]}" \
  --set train.device=cpu --set train.deterministic=false
row deterministic_false_on_auto_cpu 1 'train.deterministic = false, but the cpu device has no non-deterministic kernels' \
  "$engine" run "$recipe" --set model.path=model --set train.output_dir=run_det --set train.device=auto \
  --set train.deterministic=false "${fast[@]}"

# --- several processes: ddp and zero2 ------------------------------------------------------------------------
row parallel_layers_placement 2 "parallel.placement must be one of: balanced, sequential; got 'auto'" "${v[@]}" \
  --set parallel.plugin=layers --set parallel.placement=auto
row parallel_bucket_negative 2 'parallel.bucket_mb must be at least 0, got -1' "${v[@]}" --set parallel.plugin=ddp \
  --set parallel.bucket_mb=-1
row nproc_zero 2 '--nproc-per-node 0: expected an integer >= 1' "$engine" run "$recipe" --nproc-per-node 0
"$engine" run "$recipe" --nproc-per-node 2 --set parallel.plugin=zero2 --set model.path=model --set train.output_dir=run_z2 \
  --set train.max_steps=2 --set checkpoint.save_every=1 --set train.eval_every=0 >/dev/null 2>&1 ||
  echo "FAIL: the 2-rank zero2 run"
cp -r run_z2 run_z2_share && rm -f run_z2_share/checkpoint-2/optimizer-rank00001-of-00002.safetensors
row zero2_missing_share 1 'optimizer-rank00001-of-00002.safetensors is missing (manifest.json lists it)' "$engine" run \
  "$recipe" --set model.path=model --set train.output_dir=run_z2_share "${fast[@]}" --allow-missing-optimizer-state

# --- Hub ids and the Hugging Face cache ----------------------------------------------------------------------
mkdir hubcache
hub=(env HF_HUB_CACHE="$tmp/hubcache" MODELSCOPE_CACHE="$tmp/mscache" HF_TOKEN=)
row hub_offline_not_cached 1 'model.path tiny-org/absent is not in the Hugging Face cache' "${hub[@]}" HF_HUB_OFFLINE=1 \
  "$engine" run "$recipe" --set model.path=tiny-org/absent --set model.init_preset= --set train.output_dir=run_hub
row hub_unreachable 1 'the Hub is unreachable: cannot reach http://127.0.0.1:9/api/models/tiny-org/absent' "${hub[@]}" \
  HF_ENDPOINT=http://127.0.0.1:9 "$engine" run "$recipe" --set model.path=tiny-org/absent --set model.init_preset= \
  --set train.output_dir=run_hub
# a cache another tool left half-written: refs/main names a snapshot whose config.json links to a missing blob
c=hubcache/models--tiny-org--broken h=0123456789abcdef0123456789abcdef01234567
mkdir -p $c/refs $c/snapshots/$h $c/blobs && printf %s $h >$c/refs/main && ln -s ../../blobs/gone $c/snapshots/$h/config.json
row hub_cache_broken_link 1 'in the Hugging Face cache has no config.json; fetch it with `engine download tiny-org/broken`' \
  "${hub[@]}" HF_HUB_OFFLINE=1 "$engine" run "$recipe" --set model.path=tiny-org/broken --set model.init_preset= \
  --set train.output_dir=run_hub
row hub_id_traversal 2 "'tiny-org/x@../../..' is not a Hub id" "${hub[@]}" HF_HUB_OFFLINE=1 "$engine" download 'tiny-org/x@../../..'

echo "$rows rows, $failed failed"
[[ $failed -eq 0 ]]
