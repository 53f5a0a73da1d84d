#!/usr/bin/env python3
"""Checks an adapter the engine saved against Hugging Face PEFT (not run by CI: CI has no Python packages).

    build/bin/engine export --checkpoint output/tiny_lora/checkpoint-200 --merged --out /tmp/merged --verify \\
        --logits /tmp/engine_logits.json
    python3 scripts/check_peft_adapter.py --adapter output/tiny_lora/checkpoint-200 --merged /tmp/merged \\
        --engine-logits /tmp/engine_logits.json

1. Loads the base model named in adapter_config.json with transformers and the adapter with
   PeftModel.from_pretrained (fails if PEFT cannot read the config or reports missing/unexpected adapter keys).
2. Checks the adapter changes the base model's logits (its B matrices were trained away from zero).
3. With --merged (a directory written by `engine export --checkpoint ... --merged --out DIR`): the merged model,
   loaded by plain transformers, must give the PeftModel's logits (the engine's merge == PEFT's adapter math).
4. With --engine-logits (a JSON file {"input_ids": [[...]], "logits": [...]}, written by
   `engine export ... --logits FILE`: the engine's own base + adapter logits before merging):
   the PeftModel's logits must equal the engine's on those ids.
Prints the largest differences; exits 1 on a mismatch.
"""
import argparse
import json
import os
import sys
import warnings

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--merged")
    ap.add_argument("--engine-logits")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    conf = json.load(open(os.path.join(a.adapter, "adapter_config.json")))
    base_dir = conf["base_model_name_or_path"]
    base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32).eval()
    vocab = base.config.vocab_size
    ids = torch.tensor([[(i * 7919 + 3) % vocab for i in range(16)], [(i * 7919 + 19) % vocab for i in range(16)]])
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits.clone()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, a.adapter).eval()
    bad = [str(w.message) for w in caught if "missing" in str(w.message).lower() or "unexpected" in str(w.message).lower()]
    if bad:
        print("PEFT reported key problems:", *bad, sep="\n  ")
        return 1
    n_lora = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
    print(f"PeftModel.from_pretrained loaded {a.adapter}: {n_lora} LoRA tensors, r={conf['r']}, "
          f"alpha={conf['lora_alpha']}, targets={conf['target_modules']}")
    with torch.no_grad():
        peft_logits = model(input_ids=ids).logits
    change = (peft_logits - base_logits).abs().max().item()
    print(f"adapter changes the logits by up to {change:.4g}")
    ok = change > 1e-3
    if a.merged:
        merged = AutoModelForCausalLM.from_pretrained(a.merged, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            m = merged(input_ids=ids).logits
        diff = (m - peft_logits).abs().max().item()
        scale = max(1.0, peft_logits.abs().max().item())
        print(f"engine-merged model vs PeftModel: max |diff| {diff:.3g} (largest logit {scale:.3g})")
        ok = ok and diff <= a.tol * scale
    if a.engine_logits:
        e = json.load(open(a.engine_logits))
        eids = torch.tensor(e["input_ids"])
        with torch.no_grad():
            p = model(input_ids=eids).logits.flatten()
        el = torch.tensor(e["logits"], dtype=torch.float32)
        diff = (p - el).abs().max().item()
        print(f"engine logits vs PeftModel: max |diff| {diff:.3g}")
        ok = ok and diff <= a.tol * max(1.0, p.abs().max().item())
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
