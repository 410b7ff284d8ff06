"""The training job the speed and memory benchmarks share: mixed-length chat rows and its flags.

``write_rows(path, n=400, seed=0)`` writes ``n`` chat rows as jsonl: a user turn of one or two
sentences and an assistant reply whose length is lognormal (on SmolLM2's tokenizer: median 86, mean
103, max 301 tokens; 155 templated tokens per row), so a batch mixes short and long replies like real
SFT data. The text is drawn from
a fixed word list with a fixed seed: the same file on every machine, no hub access.

``JOB`` holds the flags of the job (SmolLM2-135M LoRA r8 all-linear, fp32, batch 4, max_length
512, 30 steps, 2 threads); the benchmarks pass them to swiftkit and the matching settings to the
baselines.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

JOB = dict(model="smollm2-135m-instruct", train_type="lora", lora_rank=8, lora_alpha=32, lora_dropout=0.05,
           target_modules=["all-linear"], max_length=512, per_device_train_batch_size=4, max_steps=30,
           learning_rate=1e-4, num_threads=2)

_TEXT = (
    "the model learns from data and each reply shows a careful answer to a question about cooking travel "
    "music science history gardens rivers mountains code numbers stories weather markets cities languages "
    "because people ask for help with small tasks every day so a clear answer saves time while a vague one "
    "costs trust first check the facts then explain the steps in order and give an example when it helps "
    "water boils at one hundred degrees at sea level bread needs flour yeast salt and patience trains leave "
    "on time when the tracks are clear a function returns a value after it runs its body lists keep order "
    "sets keep unique items maps keep keys with values light travels fast sound travels slower"
)
_WORDS = tuple(_TEXT.split())

_QUESTIONS = ("How do I {}?", "Can you explain {}?", "What is the best way to {}?", "Why does {} matter?",
              "Tell me about {}.", "Give me a short guide to {}.")
_TOPICS = ("bake bread at home", "plan a train trip", "learn a new language", "sort a list in Python",
           "grow tomatoes on a balcony", "read a weather map", "write a clear email", "save money each month",
           "tune a guitar", "explain photosynthesis", "choose a laptop", "start running safely")


def _sentence(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(max(1, n_words))]
    return " ".join(words).capitalize() + "."


def _reply(rng: random.Random, n_tokens: int) -> str:
    """About ``n_tokens`` tokens of prose (these common words are ~1.1 tokens each with a space)."""
    words, parts = round(n_tokens / 1.1), []
    while words > 0:
        k = min(words, rng.randint(6, 18))
        parts.append(_sentence(rng, k))
        words -= k
    return " ".join(parts)


def reply_lengths(n: int, seed: int = 0) -> list[int]:
    """Lognormal reply lengths in tokens: median 78, mean ~103, between 8 and 300."""
    rng = random.Random(seed)
    sigma = math.sqrt(2 * math.log(103 / 78))  # mean / median = exp(sigma^2 / 2)
    return [min(300, max(8, round(rng.lognormvariate(math.log(78), sigma)))) for _ in range(n)]


def rows(n: int = 400, seed: int = 0) -> list[dict]:
    rng = random.Random(seed + 1)
    out = []
    for length in reply_lengths(n, seed):
        question = rng.choice(_QUESTIONS).format(rng.choice(_TOPICS))
        if rng.random() < 0.7:
            question = _sentence(rng, rng.randint(8, 22)) + " " + question
        out.append({"messages": [{"role": "user", "content": question},
                                 {"role": "assistant", "content": _reply(rng, length)}]})
    return out


def write_rows(path: Path, n: int = 400, seed: int = 0) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(n, seed)))
    return path
