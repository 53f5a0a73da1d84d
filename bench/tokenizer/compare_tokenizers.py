#!/usr/bin/env python3
"""Tokenizer throughput: the engine (bench_tokenizer) next to the Python `tokenizers` package, same text.

    python3 bench/tokenizer/compare_tokenizers.py --bench build/bin/bench_tokenizer \
        [--tokenizer ../shared/fixtures/qwen-tokenizer/tokenizer.json] [--mb 16] [--threads N] [--out results.json]

Runs bench_tokenizer (which writes its documents), then times `tokenizers` on those documents with
encode_batch on one thread (RAYON_NUM_THREADS=1, in a child process) and on all threads, checks that both
produce the same ids (hash of the id stream), prints one table and writes JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def time_python(tokenizer, docs_path, repeat):
    """Runs in a child so that RAYON_NUM_THREADS is read before tokenizers starts its pool."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer)
    with open(docs_path, encoding="utf-8") as f:
        docs = json.load(f)
    start = time.perf_counter()
    encs = tok.encode_batch(docs, add_special_tokens=False)  # cold: the first pass fills its word cache
    cold = time.perf_counter() - start
    h, tokens = 0, 0
    for e in encs:
        for i in e.ids:
            h = (h * 1000003 + i) & 0xFFFFFFFFFFFFFFFF
        tokens += len(e.ids)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        tok.encode_batch(docs, add_special_tokens=False)
        best = min(best, time.perf_counter() - start)
    size = sum(len(d.encode("utf-8")) for d in docs)
    return {"seconds": best, "mb_s": size / 1e6 / best, "cold_mb_s": size / 1e6 / cold, "tokens": tokens,
            "ids_hash": h}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(time_python(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--bench", default=os.path.join(ROOT, "build", "bin", "bench_tokenizer"))
    p.add_argument("--tokenizer", default=os.path.join(ROOT, "..", "shared", "fixtures", "qwen-tokenizer",
                                                       "tokenizer.json"))
    p.add_argument("--mb", type=float, default=16)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=os.path.join(HERE, "results.json"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        docs, cpp_json = os.path.join(tmp, "docs.json"), os.path.join(tmp, "cpp.json")
        subprocess.run([a.bench, "--tokenizer", a.tokenizer, "--mb", str(a.mb), "--threads", str(a.threads),
                        "--repeat", str(a.repeat), "--write-docs", docs, "--json", cpp_json], check=True,
                       stdout=subprocess.DEVNULL)
        with open(cpp_json) as f:
            cpp = json.load(f)
        py = {}
        for name, n in (("single", 1), ("all", a.threads)):
            env = dict(os.environ, RAYON_NUM_THREADS=str(n), TOKENIZERS_PARALLELISM="true")
            out = subprocess.run([sys.executable, __file__, "--child", a.tokenizer, docs, str(a.repeat)], env=env,
                                 check=True, capture_output=True, text=True).stdout
            py[name] = json.loads(out)
    import tokenizers
    same = py["single"]["ids_hash"] == cpp["ids_hash"] and py["single"]["tokens"] == cpp["tokens"]
    rows = [
        ("engine::data::Tokenizer (C++), cold cache", 1, cpp["single_thread_cold_mb_s"]),
        ("engine::data::Tokenizer (C++)", 1, cpp["single_thread_mb_s"]),
        ("engine::data::Tokenizer (C++)", cpp["threads"], cpp["all_threads_mb_s"]),
        (f"tokenizers {tokenizers.__version__} (Rust, encode_batch), cold cache", 1, py["single"]["cold_mb_s"]),
        (f"tokenizers {tokenizers.__version__} (Rust, encode_batch)", 1, py["single"]["mb_s"]),
        (f"tokenizers {tokenizers.__version__} (Rust, encode_batch)", a.threads, py["all"]["mb_s"]),
    ]
    print(f"text: {cpp['documents']} documents, {cpp['bytes'] / 1e6:.2f} MB, {cpp['tokens']} tokens; "
          f"ids identical: {'yes' if same else 'NO'}")
    print(f"{'tokenizer':<62} {'threads':>8} {'MB/s':>10}")
    for name, threads, mbs in rows:
        print(f"{name:<62} {threads:>8} {mbs:>10.2f}")
    print(f"single-thread speed-up over tokenizers: {cpp['single_thread_mb_s'] / py['single']['mb_s']:.2f}x "
          f"(cold cache: {cpp['single_thread_cold_mb_s'] / py['single']['cold_mb_s']:.2f}x)")
    result = {"engine": cpp, "tokenizers": {"version": tokenizers.__version__, **py}, "ids_identical": same,
              "threads": a.threads, "mb": a.mb}
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    if not same:
        sys.exit("ids differ between the engine and tokenizers")


if __name__ == "__main__":
    main()
