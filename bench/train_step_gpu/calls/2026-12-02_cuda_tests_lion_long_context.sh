#!/usr/bin/env bash
# Final call: the CUDA tests of the merged tree (offload, new ops/foreach, zero3 at world 1), lion (op table only)
# on CUDA with an exact resume, then the long-context engine runs.
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ctest --test-dir build -R "cuda_train_step_test|cuda_ops_test|cuda_foreach_test|cuda_elementwise_test|zero3_cuda_test|nccl_collectives_test" --output-on-failure 2>&1 | grep -vE "^\[ *(RUN|OK) " | tail -40
# .device/lion/liblion.so: examples/third_party_plugin built here against `cmake --install build --prefix P`
export ENGINE_PLUGIN_PATH=$PWD/.device/lion:$PWD/build/lib/engine/plugins
E=build/bin/engine
lion() { $E run recipes/tiny_lora.toml --set model.path=/tmp/lm --set optimizer.plugin=lion --set optimizer.lr=0.01 \
  --set optimizer.weight_decay=0.01 --set train.output_dir=$1 --set train.max_steps=12 --set train.eval_every=0 \
  --set log.every=1 --set checkpoint.save_every=6 --set checkpoint.keep_last=0 --set train.device=cuda "${@:2}" > $1.log 2>&1 || { tail -5 $1.log; echo "lion run failed"; }; }
echo "=== lion on CUDA $(date +%T)"
lion /tmp/lion_a; lion /tmp/lion_b --resume /tmp/lion_a/checkpoint-6
grep -v eval /tmp/lion_a/metrics.jsonl | sed -n '1p;$p' | cut -c1-120
for f in adapter_model.safetensors optimizer.safetensors; do cmp /tmp/lion_a/checkpoint-12/$f /tmp/lion_b/checkpoint-12/$f && echo "lion resume: $f identical"; done
B="python3 bench/train_step_gpu/bench.py --model-dir /tmp/q7 --warmup 1 --out $OUT/results.jsonl"
run() { label=$1; shift; echo "=== $label $(date +%T)"; timeout 240 $B --label "$label" --work /tmp/eb_$label "$@" 2>&1 | grep -E "RESULT|bench:|Error|error" | sed -E 's/"losses".*//' | cut -c1-600; tail -2 /tmp/eb_$label/engine_run.log | cut -c1-300; }
run ctx32k-off --bs 1 --seq 32768 --steps 2 --checkpointing true --set train.offload_activations=true
run ctx64k-off --bs 1 --seq 65536 --steps 2 --checkpointing true --set train.offload_activations=true
