#!/usr/bin/env python3
"""Checks a folder written by `engine init-model` with readers that are not the engine's (not run by CI).

    build/bin/engine init-model --arch qwen2 --config tests/data/models/qwen2.5-7b-instruct/config.json \\
        --out /tmp/qwen7b --tokenizer ../shared/fixtures/qwen-tokenizer
    python3 scripts/check_init_model.py /tmp/qwen7b [--expect-index tests/data/models/qwen2.5-7b-instruct/model.safetensors.index.json]

1. Always, with the Python standard library only: parses every safetensors header itself (8-byte length,
   JSON, space padding to 8 bytes, data_offsets contiguous from 0 to the end of the file, sizes = shape x dtype),
   checks model.safetensors.index.json against the shards (every tensor listed once, in the file that holds it,
   total_size = the sum of tensor bytes), and samples values: norms are 1, biases 0, weights have mean ~0 and
   std ~ config.json's initializer_range.
2. With --expect-index (a published index): the same tensor names, and total_size equal (which checks shapes).
3. If the `safetensors` package is importable: safe_open lists every shard's tensors.
   If `transformers` and `torch` are: AutoModelForCausalLM.from_pretrained loads the folder (meta-free, so only
   for small models: --transformers) and runs one forward pass; the tokenizer loads with AutoTokenizer.
Exits 1 on any mismatch.
"""
import argparse
import json
import math
import os
import random
import struct
import sys

SIZES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "BOOL": 1}


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
    if n % 8:
        raise ValueError(f"{path}: header length {n} is not a multiple of 8")
    text = raw.decode("utf-8")
    if len(text) - len(text.rstrip(" ")) >= 8:
        raise ValueError(f"{path}: header padded with 8 or more spaces")
    header = json.loads(text)
    meta = header.pop("__metadata__", {})
    end = 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = t["data_offsets"]
        want = SIZES[t["dtype"]] * math.prod(t["shape"])
        if a != end or b - a != want:
            raise ValueError(f"{path}: {name} at [{a}, {b}) should be [{end}, {end + want})")
        end = b
    if 8 + n + end != os.path.getsize(path):
        raise ValueError(f"{path}: tensors end at {8 + n + end}, the file at {os.path.getsize(path)}")
    return 8 + n, header, meta


def sample(path, data_start, t, count=4096, seed=0):
    a, b = t["data_offsets"]
    size = SIZES[t["dtype"]]
    n = (b - a) // size
    rng = random.Random(seed)
    picks = range(n) if n <= count else sorted(rng.randrange(n) for _ in range(count))
    out = []
    with open(path, "rb") as f:
        for i in picks:
            f.seek(data_start + a + i * size)
            raw = f.read(size)
            if t["dtype"] == "F32":
                out.append(struct.unpack("<f", raw)[0])
            elif t["dtype"] == "BF16":
                out.append(struct.unpack("<f", b"\0\0" + raw)[0])
            elif t["dtype"] == "F16":
                out.append(struct.unpack("<e", raw)[0])
            else:
                raise ValueError(f"{path}: unexpected dtype {t['dtype']}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--expect-index")
    ap.add_argument("--transformers", action="store_true", help="also load the model with transformers (small models)")
    a = ap.parse_args()
    config = json.load(open(os.path.join(a.dir, "config.json")))
    std = config.get("initializer_range", 0.02)
    index_path = os.path.join(a.dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        index = json.load(open(index_path))
        files = sorted(set(index["weight_map"].values()))
    else:
        index, files = None, ["model.safetensors"]
    problems, where, total = [], {}, 0
    for file in files:
        path = os.path.join(a.dir, file)
        start, header, meta = read_header(path)
        if meta.get("format") != "pt":
            problems.append(f"{file}: metadata format is {meta.get('format')!r}, transformers wants 'pt'")
        for name, t in header.items():
            if name in where:
                problems.append(f"{name} is in {where[name]} and {file}")
            where[name] = file
            total += t["data_offsets"][1] - t["data_offsets"][0]
            v = sample(path, start, t, seed=len(where))
            mean = sum(v) / len(v)
            sd = math.sqrt(max(0.0, sum(x * x for x in v) / len(v) - mean * mean))
            if name.endswith("norm.weight"):
                ok = all(x == 1.0 for x in v)
            elif name.endswith(".bias"):
                ok = all(x == 0.0 for x in v)
            else:
                ok = abs(sd - std) < 0.1 * std and abs(mean) < 0.1 * std
            if not ok:
                problems.append(f"{name}: mean {mean:.4g}, std {sd:.4g} (initializer_range {std})")
        print(f"{file}: {len(header)} tensors, {os.path.getsize(path) / 1e9:.3f} GB, header ok")
    if index is not None:
        if index["weight_map"] != where:
            problems.append("the index's weight_map does not match the tensors the shards hold")
        if index["metadata"]["total_size"] != total:
            problems.append(f"total_size {index['metadata']['total_size']} != {total} bytes of tensors")
    if a.expect_index:
        want = json.load(open(a.expect_index))
        if set(want["weight_map"]) != set(where):
            problems.append(f"names differ from {a.expect_index}: missing {sorted(set(want['weight_map']) - set(where))[:5]}, "
                            f"unexpected {sorted(set(where) - set(want['weight_map']))[:5]}")
        if want["metadata"]["total_size"] != total:
            problems.append(f"total_size {total} != {want['metadata']['total_size']} of {a.expect_index}")
    print(f"{len(where)} tensors, {total} bytes; values sampled against initializer_range {std}")
    try:
        from safetensors import safe_open
    except ImportError:
        print("safetensors is not importable here: skipped safe_open")
    else:
        for file in files:
            with safe_open(os.path.join(a.dir, file), framework="numpy") as f:
                if sorted(f.keys()) != sorted(n for n, w in where.items() if w == file):
                    problems.append(f"safetensors.safe_open lists other tensors in {file}")
        print("safetensors.safe_open listed every shard's tensors")
    if a.transformers:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained(a.dir, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
        if not torch.isfinite(logits).all():
            problems.append("transformers: non-finite logits")
        if os.path.exists(os.path.join(a.dir, "tokenizer.json")):
            AutoTokenizer.from_pretrained(a.dir)
        print(f"transformers loaded the model ({sum(p.numel() for p in model.parameters())} parameters)")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
