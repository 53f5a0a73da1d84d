#!/usr/bin/env python3
"""Times training steps of the real engine path (`engine run`) on a random model of a published shape.

What runs: `engine run recipes/qwen7b_lora.toml` with the benchmark's settings (the peers' setting in
../shared/peers/peer_lora.py: LoRA r=16 alpha=16 dropout 0 on all seven linear projections, AdamW lr 1e-4
without weight decay, constant schedule, bf16, one row of `--seq` tokens per sample) on a model folder made
by `engine init-model --config CONFIG` (random weights of that shape; or the folder `peer_lora.py save`
wrote, so both train the very same weights), on a text dataset of random words long enough that every row is
one full sample of `--seq` tokens (dense causal attention, like the peers' random ids).
What it reports (one JSON object, also as a `RESULT {...}` line like peer_lora.py): tokens/s and step time
over the timed steps (after `--warmup`), peak and reserved bytes from the engine's allocator, model TFLOP/s
and MFU as the engine's metrics.jsonl gives them (model FLOPs counted like peer_lora.py; MFU against the
bf16 GEMM ceiling the engine measures in the same process, which the log states), and every step's loss.

  bench/train_step_gpu/bench.py --engine build/bin/engine --model-dir /tmp/qwen7b --bs 1 --seq 2048 \
      --steps 10 --warmup 3 --checkpointing true --out results.jsonl
"""
import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

p = argparse.ArgumentParser()
p.add_argument("--engine", default=os.path.join(ROOT, "build/bin/engine"))
p.add_argument("--recipe", default=os.path.join(ROOT, "recipes/qwen7b_lora.toml"))
p.add_argument("--config", default=os.path.join(ROOT, "tests/data/models/qwen2.5-7b-instruct/config.json"))
p.add_argument("--tokenizer", default=next((d for d in (os.path.join(ROOT, "shared/fixtures/qwen-tokenizer"),
                                                         os.path.join(ROOT, "../shared/fixtures/qwen-tokenizer"))
                                              if os.path.isdir(d)), "none"), help="for init-model")
p.add_argument("--model-dir", required=True, help="model folder; made by engine init-model when missing")
p.add_argument("--bs", type=int, default=1)
p.add_argument("--seq", type=int, default=2048)
p.add_argument("--steps", type=int, default=10, help="timed steps")
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--checkpointing", default="true", help="train.activation_checkpointing: true|false|N|auto")
p.add_argument("--max-memory", type=float, default=0.0, help="train.max_memory GiB (with --checkpointing auto)")
p.add_argument("--ids", help="a JSON file with the token ids of one batch, [[...], ...] (bs rows of seq): every "
               "step trains on this batch, like peer_lora.py's fixed random batch (data.format = tokens); "
               "default: rows of random words, a new batch each step")
p.add_argument("--set", action="append", default=[], help="extra --set for engine run")
p.add_argument("--label", default="", help="setting name in the result")
p.add_argument("--work", default="/tmp/engine_bench")
p.add_argument("--out", help="append the result as one JSON line")
p.add_argument("--timeout", type=int, default=400, help="seconds for the engine run (a long-context step can take minutes)")
a = p.parse_args()

os.makedirs(a.work, exist_ok=True)
if not os.path.exists(os.path.join(a.model_dir, "config.json")):
    t = time.time()
    subprocess.run([a.engine, "init-model", "--arch", "qwen2", "--config", a.config, "--tokenizer", a.tokenizer,
                    "--out", a.model_dir],
                   check=True)
    print(f"bench: init-model {a.model_dir} in {time.time() - t:.0f}s", flush=True)

rows = (a.steps + a.warmup) * a.bs + a.bs
data_format = "text"
if a.ids:
    # The same batch every step: each of its rows repeated, so that every micro-batch holds exactly these rows
    # (in some order; the loss of a batch does not depend on the order of its rows).
    batch = json.load(open(a.ids))
    if len(batch) != a.bs or any(len(r) != a.seq for r in batch):
        sys.exit(f"bench: --ids must hold {a.bs} rows of {a.seq} ids")
    data_format = "tokens"
    data = os.path.join(a.work, "fixed_batch.jsonl")
    with open(data, "w") as f:
        for _ in range(rows // a.bs + 1):
            for r in batch:
                f.write(json.dumps({"input_ids": r}) + "\n")
    if a.bs > 1:
        print("bench: --ids with --bs > 1 gives the same rows, not necessarily the same batches", flush=True)
else:
    # Random words: about 2 tokens each with a BPE tokenizer, so 1.5 x seq words overfill every row.
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    data = os.path.join(a.work, f"random_text_{a.seq}_{rows}.jsonl")
    with open(data, "w") as f:
        for _ in range(rows):
            words = ("".join(rng.choice(letters) for _ in range(rng.randint(3, 8))) for _ in range(int(1.5 * a.seq)))
            f.write(json.dumps({"text": " ".join(words)}) + "\n")

out_dir = os.path.join(a.work, "run")
subprocess.run(["rm", "-rf", out_dir])
sets = {
    "model.path": a.model_dir, "data.train": data, "data.format": data_format, "data.packing": "true",
    "data.max_seq_len": str(a.seq), "data.chat_template": "none", "train.micro_batch_size": str(a.bs),
    "train.grad_accum": "1", "train.max_steps": str(a.steps + a.warmup), "train.epochs": "1000",
    "train.output_dir": out_dir, "train.eval_every": "0", "train.device": "cuda", "train.dtype": "bf16",
    "train.activation_checkpointing": a.checkpointing, "checkpoint.save_every": "0", "log.every": "1",
    "peft.lora_alpha": "16", "peft.lora_dropout": "0.0", "optimizer.lr": "1e-4", "optimizer.weight_decay": "0.0",
    "scheduler.kind": "constant", "scheduler.warmup_ratio": "0.0", "train.grad_clip": "0.0",
}
if a.max_memory > 0:
    sets["train.max_memory"] = str(a.max_memory)
cmd = [a.engine, "run", a.recipe]
for k, v in sets.items():
    cmd += ["--set", f"{k}={v}"]
for s in a.set:
    cmd += ["--set", s]
t = time.time()
try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
except subprocess.TimeoutExpired as e:
    # Keep what the run printed (a step of a long row can take minutes): the log says how far it got.
    def text(b):
        return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
    with open(os.path.join(a.work, "engine_run.log"), "w") as f:
        f.write(text(e.stdout) + text(e.stderr))
    sys.exit(f"bench: engine run still running after --timeout {a.timeout} s (stopped; its output so far is in "
             f"{os.path.join(a.work, 'engine_run.log')}): give a larger --timeout")
log = proc.stdout + proc.stderr
with open(os.path.join(a.work, "engine_run.log"), "w") as f:
    f.write(log)
if proc.returncode != 0:
    sys.stderr.write(log[-4000:])
    sys.exit(f"bench: engine run exited {proc.returncode}")

steps = [json.loads(line) for line in open(os.path.join(out_dir, "metrics.jsonl")) if '"loss"' in line]
timed = steps[a.warmup:]
if not timed:
    sys.exit("bench: no timed steps in metrics.jsonl")
tok = a.bs * a.seq
step_s = [tok / s["tokens_per_s"] for s in timed]
ceiling = re.search(r"GEMM ceiling of the device: ([0-9.]+) TFLOP/s", log)
ckpt = re.search(r"activation checkpointing auto: (\d+) of (\d+) blocks", log)
res = dict(
    system="engine", setting=a.label or f"lora ckpt={a.checkpointing}", batch=a.bs, seq=a.seq,
    tokens_per_s=tok * len(step_s) / sum(step_s), step_s=sum(step_s) / len(step_s),
    step_s_median=statistics.median(step_s), step_s_min=min(step_s), step_s_max=max(step_s),
    peak_gib=max(s["mem_bytes"] for s in timed) / 2**30,
    reserved_gib=max(s.get("mem_reserved_bytes", 0) for s in timed) / 2**30,
    model_tflops=statistics.mean(s["model_tflops"] for s in timed) if "model_tflops" in timed[0] else None,
    mfu=statistics.mean(s["mfu"] for s in timed) if "mfu" in timed[0] else None,
    gemm_tflops=float(ceiling.group(1)) if ceiling else None,
    checkpoint_blocks=int(ckpt.group(1)) if ckpt else a.checkpointing,
    losses=[s["loss"] for s in steps], wall_s=time.time() - t)
print("RESULT " + json.dumps(res), flush=True)
if a.out:
    with open(a.out, "a") as f:
        f.write(json.dumps(res) + "\n")
