"""The native evaluators of reference text (ROUGE-L, BLEU, chrF) and code (pass@k by execution).

Reference text: the reply to each prompt is compared with the reference; ``rouge_l`` is the mean of the
items' ROUGE-L F (each item's own is its ``score``), ``bleu`` and ``chrf`` are corpus scores (sacrebleu),
``sentence_bleu``/``sentence_chrf`` their per-item means. All are fractions in [0, 1]; CJK text is
tokenized per character (see :mod:`swiftkit.evaluate.text_scores`).

Code: ``num_samples`` programs per problem (greedy when 1), each executed by
:func:`swiftkit.evaluate.code_exec.run_program` with the time and memory limits; ``pass@k`` (the unbiased
estimator over the samples) for k = 1 and each power of ten up to ``num_samples``. An item's ``score``
is its pass@1.
"""

from __future__ import annotations

from swiftkit.evaluate.cards import BenchmarkError
from swiftkit.evaluate.code_exec import humaneval_program, mbpp_program, pass_at_k, run_program, strip_code_fences
from swiftkit.evaluate.text_scores import bleu, chrf, rouge_l, sentence_bleu, sentence_chrf


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


class ReferenceTextTask:
    higher_is_better = True

    def __init__(self, name: str, *, primary: str = "rouge_l", max_new_tokens: int = 256,
                 generation: dict | None = None):
        self.name, self.primary = name, primary
        self.generation = {**(generation or {}), "max_new_tokens": max_new_tokens}

    def score(self, model, items: list[dict]) -> list[dict]:
        replies = model.generate([[{"role": "user", "content": item["prompt"]}] for item in items], **self.generation)
        results = []
        for item, reply in zip(items, replies):
            ref = item["reference"]
            scores = {"rouge_l": rouge_l(reply, ref), "sentence_bleu": sentence_bleu(reply, ref),
                      "sentence_chrf": sentence_chrf(reply, ref)}
            results.append({"id": item["id"], "subject": item["subject"], "prompt": item["prompt"], "reply": reply,
                            "reference": item["reference"], **scores,
                            "score": scores.get(self.primary, scores["rouge_l"])})
        return results

    def aggregate(self, results: list[dict]) -> dict[str, float]:
        replies, refs = [r["reply"] for r in results], [r["reference"] for r in results]
        return {"rouge_l": _mean(r["rouge_l"] for r in results), "bleu": bleu(replies, refs),
                "chrf": chrf(replies, refs), "sentence_bleu": _mean(r["sentence_bleu"] for r in results),
                "sentence_chrf": _mean(r["sentence_chrf"] for r in results)}


def pass_ks(n: int) -> list[int]:
    """k = 1 and every power of ten up to ``n``."""
    ks, k = [1], 10
    while k <= n:
        ks.append(k)
        k *= 10
    return ks


class CodeTask:
    higher_is_better = True
    primary = "pass@1"

    def __init__(self, name: str, *, layout: str, num_samples: int, timeout_s: float, memory_mb: int,
                 max_new_tokens: int = 512, generation: dict | None = None):
        self.name, self.layout, self.num_samples = name, layout, num_samples
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        self.generation = {**(generation or {}), "max_new_tokens": max_new_tokens}
        if num_samples > 1 and not self.generation.get("temperature"):
            raise BenchmarkError(f"benchmark {name}: --eval_num_samples {num_samples} samples the same problem "
                                 "several times; greedy decoding gives one answer: add --temperature (e.g. 0.8)")

    def _ask(self, item: dict) -> str:
        if self.layout == "humaneval":
            return ("Complete the following Python function. Reply with the whole function in a ```python block.\n\n"
                    f"```python\n{item['prompt']}```")
        tests = "\n".join(item["test_list"][:1])
        return f"{item['prompt']}\nYour code should pass this test:\n{tests}\nReply with the code in a ```python block."

    def _program(self, item: dict, reply: str) -> str:
        code = strip_code_fences(reply)
        if self.layout == "humaneval":
            return humaneval_program(item["prompt"], code, item["test"], item["entry_point"])
        return mbpp_program(code, item["test_list"], item.get("test_setup_code", ""))

    def score(self, model, items: list[dict]) -> list[dict]:
        conversations = [[{"role": "user", "content": self._ask(item)}] for item in items]
        samples = [model.generate(conversations, **self.generation) for _ in range(self.num_samples)]
        results = []
        for i, item in enumerate(items):
            runs = [run_program(self._program(item, s[i]), timeout_s=self.timeout_s, memory_mb=self.memory_mb)
                    for s in samples]
            passed = sum(r["status"] == "passed" for r in runs)
            ks = {f"pass@{k}": pass_at_k(self.num_samples, passed, k) for k in pass_ks(self.num_samples)}
            results.append({"id": item["id"], "subject": "", "prompt": conversations[i][0]["content"],
                            "replies": [s[i] for s in samples], "statuses": [r["status"] for r in runs],
                            "details": [r["detail"] for r in runs], "passed": passed, **ks, "score": ks["pass@1"]})
        return results

    def aggregate(self, results: list[dict]) -> dict[str, float]:
        keys = [k for k in results[0] if k.startswith("pass@")] if results else []
        statuses = [s for r in results for s in r["statuses"]]
        return {**{k: _mean(r[k] for r in results) for k in keys},
                "timeouts": float(sum(s == "timeout" for s in statuses))}


def make_text_task(name: str, card, settings, max_new_tokens: int):
    """The task of a ``text`` or ``code`` card (neither takes few-shot examples)."""
    if card.kind == "text":
        return ReferenceTextTask(name, primary=card.primary, max_new_tokens=max_new_tokens,
                                 generation=settings.generation)
    return CodeTask(name, layout=card.layout, num_samples=settings.num_samples, timeout_s=settings.code_timeout,
                    memory_mb=settings.code_memory_mb, max_new_tokens=max_new_tokens, generation=settings.generation)
