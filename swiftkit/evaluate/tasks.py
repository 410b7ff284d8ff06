"""The native evaluators of multiple choice, answer-extracting generation and perplexity.

Each is a :class:`~swiftkit.evaluate.runner.Task`: ``score(model, items)`` gives one result per item and
``aggregate(results)`` the metrics, with a per-subject breakdown (``acc/<subject>``) where items have
subjects. Reference text metrics and code are in :mod:`swiftkit.evaluate.text_tasks`.
"""

from __future__ import annotations

import math
from collections import defaultdict

from swiftkit.data.answers import (
    answers_match,
    extract_boxed,
    extract_gsm8k,
    extract_option_letter,
    extract_regex,
)
from swiftkit.evaluate.layouts import LETTERS
from swiftkit.evaluate.prompts import generation_messages, mc_requests, pick_shots

_NUMBER_PATTERN = r"(-?[\d,]*\.?\d+(?:/\d+)?)"
DEFAULT_INSTRUCTIONS = {
    "gsm8k": "Solve the problem step by step, then give the final number after '####'.",
    "boxed": "Solve the problem step by step, then put the final answer in \\boxed{}.",
    "letter": "Answer with the letter of the correct option.",
    "number": "Give the final answer as a number at the end.",
}


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def by_subject(results: list[dict], key: str) -> dict[str, float]:
    """``{key}/{subject}`` means, when the items have more than one subject."""
    groups = defaultdict(list)
    for r in results:
        groups[r.get("subject") or ""].append(r[key])
    if len(groups) < 2:
        return {}
    return {f"{key}/{subject or '(none)'}": _mean(values) for subject, values in sorted(groups.items())}


class MultipleChoiceTask:
    """Each option's log-likelihood after the prompt; ``acc`` takes the most likely option, ``acc_norm``
    the most likely per character of the option's text (fairer when options differ in length)."""

    higher_is_better = True

    def __init__(self, name: str, *, shots: list[dict], few_shot: int, chat: bool, raw_text: bool = False,
                 primary: str = "acc"):
        self.name, self.primary = name, primary
        self.pool, self.few_shot, self.chat, self.raw_text = shots, few_shot, chat, raw_text

    def score(self, model, items: list[dict]) -> list[dict]:
        requests, spans = [], []
        for item in items:
            reqs = mc_requests(item, pick_shots(item, self.pool, self.few_shot), model, self.chat, self.raw_text)
            spans.append((len(requests), len(reqs)))
            requests += reqs
        scored = model.loglikelihood(requests)
        results = []
        for item, (start, count) in zip(items, spans):
            lls = [ll for ll, _ in scored[start:start + count]]
            conts = [cont for _, cont in requests[start:start + count]]
            normed = [ll / max(1, len(cont.strip())) for ll, cont in zip(lls, conts)]
            pick = max(range(count), key=lambda i: lls[i])
            pick_norm = max(range(count), key=lambda i: normed[i])
            acc, acc_norm = float(pick == item["gold"]), float(pick_norm == item["gold"])
            results.append({"id": item["id"], "subject": item["subject"], "question": item["question"],
                            "options": item["options"], "gold": item["gold"], "pred": pick, "pred_norm": pick_norm,
                            "loglikelihoods": lls, "acc": acc, "acc_norm": acc_norm,
                            "score": acc_norm if self.primary == "acc_norm" else acc})
        return results

    def aggregate(self, results: list[dict]) -> dict[str, float]:
        return {"acc": _mean(r["acc"] for r in results), "acc_norm": _mean(r["acc_norm"] for r in results),
                **by_subject(results, "acc")}


def _normalized(text: str) -> str:
    return " ".join(str(text).casefold().strip().strip(".").split())


class GenerationTask:
    """Generate a reply, extract the answer (``extractor``), compare with the reference: ``acc``.

    ``letter``: multiple-choice items scored by the letter the model writes (``extract_option_letter``).
    """

    higher_is_better = True
    primary = "acc"

    def __init__(self, name: str, *, shots: list[dict], few_shot: int, extractor: str, pattern: str | None = None,
                 instruction: str | None = None, max_new_tokens: int = 512, generation: dict | None = None):
        self.name, self.pool, self.few_shot = name, shots, few_shot
        self.extractor, self.pattern = extractor, pattern
        self.instruction = instruction if instruction is not None else DEFAULT_INSTRUCTIONS.get(extractor)
        self.generation = {**(generation or {}), "max_new_tokens": max_new_tokens}

    def extract(self, reply: str, item: dict) -> str | None:
        kind = self.extractor
        if kind == "gsm8k":
            return extract_gsm8k(reply)
        if kind == "boxed":
            return extract_boxed(reply)
        if kind == "letter":
            return extract_option_letter(reply, len(item["options"]))
        if kind == "number":
            return extract_regex(reply.replace("$", ""), _NUMBER_PATTERN)
        if kind == "regex":
            return extract_regex(reply, self.pattern)
        return reply.strip()

    def reference(self, item: dict) -> str:
        return LETTERS[item["gold"]] if self.extractor == "letter" and "gold" in item else str(item["reference"])

    def correct(self, answer: str | None, reference: str) -> bool:
        if answer is None:
            return False
        if self.extractor == "letter":
            return answer.strip().upper() == reference.strip().upper()
        if self.extractor in ("exact", "regex"):
            return _normalized(answer) == _normalized(reference) or answers_match(answer, reference)
        return answers_match(answer, reference)

    def score(self, model, items: list[dict]) -> list[dict]:
        letter = self.extractor == "letter" and "options" in (items[0] if items else {})
        conversations = [generation_messages(item, pick_shots(item, self.pool, self.few_shot), self.instruction,
                                             letter=letter) for item in items]
        replies = model.generate(conversations, **self.generation)
        results = []
        for item, messages, reply in zip(items, conversations, replies):
            answer, reference = self.extract(reply, item), self.reference(item)
            acc = float(self.correct(answer, reference))
            results.append({"id": item["id"], "subject": item["subject"], "prompt": messages[-1]["content"],
                            "reply": reply, "answer": answer, "reference": reference, "acc": acc,
                            "extracted": float(answer is not None), "score": acc})
        return results

    def aggregate(self, results: list[dict]) -> dict[str, float]:
        return {"acc": _mean(r["acc"] for r in results), "extracted": _mean(r["extracted"] for r in results),
                **by_subject(results, "acc")}


class PerplexityTask:
    """Log-likelihood of whole texts: token perplexity, bits per byte (tokenizer-independent) and word
    perplexity, each from the sums over all texts; an item's ``score`` is its own bits per byte."""

    higher_is_better = False
    primary = "bits_per_byte"

    def __init__(self, name: str):
        self.name = name

    def score(self, model, items: list[dict]) -> list[dict]:
        scored = model.rolling_loglikelihood([item["text"] for item in items])
        results = []
        for item, (ll, tokens) in zip(items, scored):
            n_bytes, words = len(item["text"].encode("utf-8")), len(item["text"].split())
            results.append({"id": item["id"], "loglikelihood": ll, "tokens": tokens, "bytes": n_bytes, "words": words,
                            "score": -ll / math.log(2) / max(1, n_bytes)})
        return results

    def aggregate(self, results: list[dict]) -> dict[str, float]:
        ll = sum(r["loglikelihood"] for r in results)
        tokens, n_bytes, words = (sum(r[k] for r in results) for k in ("tokens", "bytes", "words"))
        return {"perplexity": math.exp(-ll / max(1, tokens)), "bits_per_byte": -ll / math.log(2) / max(1, n_bytes),
                "word_perplexity": math.exp(-ll / max(1, words)), "tokens": float(tokens)}
