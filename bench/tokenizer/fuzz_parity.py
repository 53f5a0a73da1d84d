#!/usr/bin/env python3
"""Randomised parity check of engine::data::Tokenizer against the Python `tokenizers` package.

    python3 bench/tokenizer/fuzz_parity.py [SEED] [TOKENIZER_JSON]
Builds 3000 random strings from pools of characters that stress the pipeline (Unicode whitespace kinds,
combining marks, digits of many scripts, emoji sequences, control characters, added tokens spliced in),
encodes and decodes them with build/bin/bench_tokenizer --docs/--ids-out and with `tokenizers`, and prints
mismatches of ids or decoded text.
Not part of CI (it needs Python packages); run it after changing the tokenizer.
"""
import json, os, random, subprocess, sys
from tokenizers import Tokenizer
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
tokpath = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared', 'fixtures', 'qwen-tokenizer', 'tokenizer.json')
pools = [
  ["<mask>", "caf\u00e9 au lait", "cafe\u0301 au lait", "  <mask>  ", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</tool_call>", "<s>", "</s>", "<0x41>", "[WORD]", "x[WORD]", "_[WORD]é"],
  "<mask>", "caf\u00e9 au lait", "cafe\u0301 au lait", "  <mask>  ",
  " \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2028\u2029\u202f\u205f\u3000\u200b\ufeff",
  "abcxyzABCXYZ'sSTtre", "0123456789٠١٢३४५½²⅓Ⅻ",
  "!?.,;:-_()[]{}<>|/\\\"'`~@#$%^&*+=",
  "éèêëàâäôöûüçñßøåæœ", "e\u0301a\u0300o\u0308n\u0303\u0327\u0328\u0323\u0307",
  "中文日本語한국어ひらがなカタカナ", "\u1100\u1161\u11a8\uac00",
  "Приветмир", "مرحبا", "नमस्ते", "ไทย", "😀👍🏽👨‍👩‍👧🇩🇪❤️\ufe0f",
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start", "|>",
  "\U0001F600\U0010FFFF\U000E0001", "\u0000\u0001\u001f\u007f",
]
import tempfile
tmp = tempfile.mkdtemp()
docs_path, ids_path = os.path.join(tmp, 'docs.json'), os.path.join(tmp, 'ids.jsonl')
docs = []
for _ in range(3000):
    n = random.randint(0, 40)
    s = "".join(random.choice(random.choice(pools)) * random.choice([1,1,1,2,3,7]) for _ in range(n))
    if random.random() < 0.5:
        parts = list(s)
        for _ in range(random.randint(1, 4)):
            parts.insert(random.randint(0, len(parts)), random.choice(pools[0]))
        s = "".join(parts)
    docs.append(s)
json.dump(docs, open(docs_path,'w'))
subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'build', 'bin', 'bench_tokenizer'),'--tokenizer',tokpath,'--docs',docs_path,'--ids-out',ids_path,'--repeat','1','--threads','1'], check=True, stdout=subprocess.DEVNULL)
tok = Tokenizer.from_file(tokpath)
mine = [json.loads(l) for l in open(ids_path)]
bad = 0
for d, m in zip(docs, mine):
    ref = tok.encode(d, add_special_tokens=False).ids
    ref_text = tok.decode(ref, skip_special_tokens=False)
    if ref != m["ids"] or ref_text != m["text"]:
        bad += 1
        if bad <= 5: print(repr(d), '\n ref', ref, repr(ref_text), '\n got', m["ids"], repr(m["text"]))
print('docs', len(docs), 'mismatches', bad)
sys.exit(1 if bad else 0)
