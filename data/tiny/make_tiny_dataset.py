#!/usr/bin/env python3
"""Writes the tiny alpaca-style dataset the tiny recipes train on (train.jsonl, eval.jsonl in this folder).

Short instructions with simple, learnable patterns (fixed facts, counting, greetings, opposites, echoing), so
that a tiny model's loss falls clearly within a couple of minutes on a CPU. Deterministic (seeded, standard
library only). Rerun from the repository root:
    python3 data/tiny/make_tiny_dataset.py
Each line: {"instruction": ..., "input": ..., "output": ...} (the Stanford Alpaca fields).
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))

FRUITS = {"banana": "yellow", "apple": "red", "lime": "green", "plum": "purple", "orange": "orange",
          "cherry": "red", "kiwi": "brown", "lemon": "yellow", "grape": "purple", "pear": "green"}
OPPOSITES = {"hot": "cold", "up": "down", "big": "small", "fast": "slow", "day": "night", "open": "closed",
             "left": "right", "happy": "sad", "early": "late", "light": "dark", "old": "new", "full": "empty"}
NAMES = ["Ada", "Bob", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivy", "Jon", "Kai", "Lena", "Mia", "Noa"]
ANIMALS = {"cat": "meow", "dog": "woof", "cow": "moo", "duck": "quack", "sheep": "baa", "owl": "hoot"}


def example(rng):
    kind = rng.randrange(6)
    if kind == 0:
        fruit = rng.choice(sorted(FRUITS))
        return {"instruction": f"What color is a {fruit}?", "input": "", "output": f"A {fruit} is {FRUITS[fruit]}."}
    if kind == 1:
        n = rng.randrange(1, 30)
        return {"instruction": "Count up by one, four numbers.", "input": str(n),
                "output": ", ".join(str(n + i) for i in range(4))}
    if kind == 2:
        name = rng.choice(NAMES)
        return {"instruction": f"Say hello to {name}.", "input": "", "output": f"Hello, {name}! Nice to meet you."}
    if kind == 3:
        word = rng.choice(sorted(OPPOSITES))
        return {"instruction": "Give the opposite word.", "input": word,
                "output": f"The opposite of {word} is {OPPOSITES[word]}."}
    if kind == 4:
        animal = rng.choice(sorted(ANIMALS))
        return {"instruction": f"What does a {animal} say?", "input": "", "output": f"A {animal} says {ANIMALS[animal]}."}
    words = [rng.choice(sorted(FRUITS)) for _ in range(3)]
    return {"instruction": "Repeat the words.", "input": " ".join(words), "output": " ".join(words)}


def write(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    rng = random.Random(1234)
    write(os.path.join(HERE, "train.jsonl"), [example(rng) for _ in range(384)])
    write(os.path.join(HERE, "eval.jsonl"), [example(rng) for _ in range(32)])
    print("wrote", HERE)
