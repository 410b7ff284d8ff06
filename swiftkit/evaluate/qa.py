"""The built-in ``qa`` benchmark: replies to ``--val_dataset`` prompts against their references.

Each row's final assistant message is the reference; the rest is the prompt. Three scores per
example, averaged over the examples:

* ``exact_match``: reply and reference are equal after normalisation (case folded, punctuation
  dropped, whitespace collapsed);
* ``contains``: the normalised reference occurs in the normalised reply (answers wrapped in a
  sentence still count);
* ``f1``: token-overlap F1 between reply and reference, with words as tokens and each CJK
  character a token of its own, so Chinese answers are scored too.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from swiftkit.inference.replies import batched_replies, generation_kwargs, load_val_rows, split_prompt

_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Case-folded text without punctuation, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(ch).startswith(("P", "S")) else ch for ch in text)
    return " ".join(kept.split())


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def f1(reply: str, reference: str) -> float:
    got, want = tokens(reply), tokens(reference)
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def score(reply: str, reference: str) -> dict[str, float]:
    r, ref = normalize(reply), normalize(reference)
    return {"exact_match": float(r == ref), "contains": float(bool(ref) and ref in r), "f1": f1(reply, reference)}


class QABenchmark:
    """Generate a reply for every ``--val_dataset`` row and score it against the row's reference."""

    def __init__(self, registries):
        self.registries = registries

    def evaluate(self, engine, config) -> dict:
        rows = load_val_rows(config, self.registries, require_reply=True)
        if config.eval.eval_limit is not None:
            rows = rows[: config.eval.eval_limit]
        pairs = [split_prompt(r["messages"]) for r in rows]
        prompts = [p for p, _ in pairs]
        replies = [reply for batch in batched_replies(
            engine, prompts, config.generation.max_batch_size, generation_kwargs(config.generation)
        ) for reply in batch]
        samples = []
        for (prompt, reference), reply in zip(pairs, replies):
            samples.append({"messages": prompt, "reference": reference, "reply": reply, **score(reply, reference)})
        names = ("exact_match", "contains", "f1")
        metrics = {n: sum(s[n] for s in samples) / len(samples) for n in names} if samples else {}
        return {"metrics": {**metrics, "num_samples": len(samples)}, "samples": samples}
