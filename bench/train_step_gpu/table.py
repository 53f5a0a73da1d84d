#!/usr/bin/env python3
"""Turns the result lines of one compare.sh call (bench.py, peer_lora.py, step_floor.py) into the table of
bench/RESULTS.md and compare.json: {"date", "gpu", "gemm_tflops", "rows": [{"system", "setting", "batch",
"seq", "tokens_per_s", "peak_gib", "mfu", ...}]} with each row's ratio to Unsloth's and to the floor."""
import argparse
import datetime
import json

p = argparse.ArgumentParser()
p.add_argument("results")
p.add_argument("--json")
a = p.parse_args()
lines = [json.loads(l) for l in open(a.results) if l.strip()]
gemm = next((l["tflops"] for l in lines if l.get("variant") == "gemm"), None)
gpu = next((l["gpu"] for l in lines if "gpu" in l), "?")
floor = {l["bs"]: l for l in lines if l.get("variant") == "floor"}
names = {"hf": "transformers+peft", "liger": "transformers+peft+liger", "unsloth": "unsloth",
         "hf_qlora": "transformers+peft+bnb (qlora)", "unsloth_qlora": "unsloth (qlora)"}
rows = []
for l in lines:
    if l.get("system") == "engine":
        rows.append(dict(system="engine", setting=l["setting"], batch=l["batch"], seq=l["seq"],
                         tokens_per_s=l["tokens_per_s"], peak_gib=l["peak_gib"], reserved_gib=l["reserved_gib"],
                         model_tflops=l["model_tflops"], engine_gemm_tflops=l["gemm_tflops"],
                         loss_first=l["losses"][0], loss_last=l["losses"][-1]))
    elif l.get("variant") in names:
        rows.append(dict(system=names[l["variant"]], setting=l["variant"], batch=l["bs"], seq=l["seq"],
                         tokens_per_s=l["tokens_per_s"], peak_gib=l["peak_gib"], reserved_gib=l["reserved_gib"],
                         model_tflops=l["model_tflops"], loss_first=l["loss_first"], loss_last=l["loss_last"]))
for r in rows:
    r["mfu"] = r["model_tflops"] / gemm if gemm and r.get("model_tflops") else None
    ref = next((x for x in rows if x["system"].startswith("unsloth") and x["batch"] == r["batch"]
                and ("qlora" in x["setting"]) == ("qlora" in r["setting"])), None)
    r["vs_unsloth"] = r["tokens_per_s"] / ref["tokens_per_s"] if ref else None
    f = floor.get(r["batch"])
    r["vs_floor"] = r["tokens_per_s"] / f["max_tokens_per_s"] if f else None
# Exactness: step 1 of the engine on the peers' own batch and weights against transformers+PEFT's step 1.
exact = next((l for l in lines if l.get("system") == "engine" and l.get("setting") == "exact-peer-batch"), None)
hf = next((l for l in lines if l.get("variant") == "hf"), None)
exactness = None
if exact and hf:
    exactness = dict(engine_loss_step1=exact["losses"][0], hf_loss_step1=hf["loss_first"],
                     rel_diff=abs(exact["losses"][0] - hf["loss_first"]) / abs(hf["loss_first"]))
rows = [r for r in rows if r["setting"] != "exact-peer-batch"]
doc = dict(date=datetime.date.today().isoformat(), gpu=gpu, gemm_tflops=gemm, rows=rows,
           floor={str(k): v["max_tokens_per_s"] for k, v in floor.items()}, exactness=exactness)
if a.json:
    json.dump(doc, open(a.json, "w"), indent=1)
fmt = lambda v, s: "-" if v is None else s.format(v)
print(f"{gpu}, bf16 GEMM ceiling {fmt(gemm, '{:.0f}')} TFLOP/s; floor " +
      ", ".join(f"bs {k}: {v['max_tokens_per_s']:,.0f} tok/s" for k, v in floor.items()))
print()
print("| system | setting | batch | tokens/s | peak GiB | reserved GiB | model TFLOP/s | MFU | vs Unsloth | vs floor | loss first/last |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for r in rows:
    print(f"| {r['system']} | {r['setting']} | {r['batch']} | {r['tokens_per_s']:,.0f} | {r['peak_gib']:.2f} | "
          f"{r['reserved_gib']:.2f} | {fmt(r['model_tflops'], '{:.0f}')} | {fmt(r['mfu'], '{:.1%}')} | "
          f"{fmt(r['vs_unsloth'], '{:.2f}x')} | {fmt(r['vs_floor'], '{:.1%}')} | "
          f"{r['loss_first']:.3f} / {r['loss_last']:.3f} |")
if exactness:
    print()
    print(f"step 1 on the same weights and batch: engine loss {exactness['engine_loss_step1']:.5f}, "
          f"transformers+PEFT {exactness['hf_loss_step1']:.5f} (relative difference {exactness['rel_diff']:.2e})")
