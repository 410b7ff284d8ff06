"""Native benchmark layouts: a raw row (as the hub or a local file has it) -> one uniform item.

Items of every kind have an ``id`` (unique in the benchmark) and a ``subject`` (for the per-subject
breakdown; ``""`` when the layout has none). Multiple choice: ``question``, ``options`` (texts), ``gold``
(index) and ``style`` (``letter``: the options are listed and a letter answers; ``text``: the option's
text continues the prompt; ``partial``: each option fills a blank and the sentence's rest is scored).
Generation: ``question``, ``reference`` (the answer compared), ``solution`` (a worked answer for
few-shot). Perplexity: ``text``. Reference text: ``prompt``, ``reference``. Code: ``prompt`` plus
what the program needs (``test``/``entry_point`` or ``test_list``/``test_setup_code``).

A row missing a column of its layout is a :class:`~swiftkit.evaluate.cards.BenchmarkError` naming the
row's origin (file and line), the layout and the columns it has.
"""

from __future__ import annotations

import json
import string

from swiftkit.data.answers import extract_boxed, gsm8k_reference
from swiftkit.evaluate.cards import BenchmarkError

LETTERS = string.ascii_uppercase


def _need(row: dict, layout: str, *columns: str) -> None:
    missing = [c for c in columns if row.get(c) is None]
    if missing:
        have = ", ".join(sorted(k for k in row if not k.startswith("_"))) or "none"
        raise BenchmarkError(f"{row.get('_origin', '?')}: a {layout} row needs column(s) {', '.join(missing)}; "
                             f"it has {have}")


def _bad(row: dict, layout: str, problem: str) -> BenchmarkError:
    return BenchmarkError(f"{row.get('_origin', '?')}: {layout} row: {problem}")


def _listed(value):
    """A list column that a CSV or JSON file may hold as JSON text."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed
    return value


def _gold_index(row: dict, layout: str, answer, n: int, labels: list[str] | None = None) -> int:
    labels = labels or list(LETTERS[:n])
    text = str(answer).strip()
    if text in labels:
        return labels.index(text)
    if isinstance(answer, int) or text.lstrip("-").isdigit():
        index = int(text)
        if 0 <= index < n:
            return index
    raise _bad(row, layout, f"answer {answer!r} is neither an option label ({', '.join(labels)}) nor an "
                            f"index 0-{n - 1}")


def _mc(row, i, question, options, gold, style, subject="") -> dict:
    return {"id": str(row.get("id", row.get("task_id", i))), "subject": str(subject or ""), "question": question,
            "options": [str(o) for o in options], "gold": gold, "style": style}


def _mmlu(row, i):
    _need(row, "mmlu", "question", "choices", "answer")
    choices = _listed(row["choices"])
    if not isinstance(choices, list) or len(choices) < 2:
        raise _bad(row, "mmlu", "choices must be a list of at least 2 options")
    return _mc(row, i, row["question"], choices, _gold_index(row, "mmlu", row["answer"], len(choices)), "letter",
               row.get("subject", ""))


def _ceval(row, i):
    _need(row, "ceval", "question", "answer", "A", "B")
    options = [row[k] for k in LETTERS if row.get(k) not in (None, "")]
    return _mc(row, i, row["question"], options, _gold_index(row, "ceval", row["answer"], len(options)), "letter",
               row.get("subject", row.get("_subset", "")))


def _arc(row, i):
    _need(row, "arc", "question", "choices", "answerKey")
    choices = _listed(row["choices"])
    if not isinstance(choices, dict) or not {"text", "label"} <= set(choices):
        raise _bad(row, "arc", "choices must be {text: [...], label: [...]}")
    labels = [str(x) for x in choices["label"]]
    return _mc(row, i, row["question"], choices["text"],
               _gold_index(row, "arc", row["answerKey"], len(labels), labels), "text")


def _hellaswag(row, i):
    _need(row, "hellaswag", "endings", "label")
    ctx = row.get("ctx") or f"{row.get('ctx_a', '')} {str(row.get('ctx_b', '')).capitalize()}".strip()
    if not ctx:
        raise _bad(row, "hellaswag", "needs ctx (or ctx_a and ctx_b)")
    endings = _listed(row["endings"])
    return _mc(row, i, ctx, endings, _gold_index(row, "hellaswag", row["label"], len(endings)), "text",
               row.get("activity_label", ""))


def _truthfulqa(row, i):
    _need(row, "truthfulqa_mc1", "question", "mc1_targets")
    targets = _listed(row["mc1_targets"])
    if not isinstance(targets, dict) or 1 not in list(targets.get("labels", [])):
        raise _bad(row, "truthfulqa_mc1", "mc1_targets must be {choices: [...], labels: [...]} with one label 1")
    return _mc(row, i, row["question"], targets["choices"], list(targets["labels"]).index(1), "text")


def _piqa(row, i):
    _need(row, "piqa", "goal", "sol1", "sol2", "label")
    return _mc(row, i, row["goal"], [row["sol1"], row["sol2"]], _gold_index(row, "piqa", row["label"], 2), "text")


def _winogrande(row, i):
    _need(row, "winogrande", "sentence", "option1", "option2", "answer")
    if "_" not in row["sentence"]:
        raise _bad(row, "winogrande", "the sentence has no '_' blank")
    gold = _gold_index(row, "winogrande", row["answer"], 2, ["1", "2"])
    return _mc(row, i, row["sentence"], [row["option1"], row["option2"]], gold, "partial")


def _gen(row, i, question, reference, solution, subject="") -> dict:
    return {"id": str(row.get("id", row.get("unique_id", i))), "subject": str(subject or ""),
            "question": str(question), "reference": str(reference), "solution": str(solution)}


def _gsm8k(row, i):
    _need(row, "gsm8k", "question", "answer")
    return _gen(row, i, row["question"], gsm8k_reference(str(row["answer"])), row["answer"])


def _math(row, i):
    _need(row, "math", "problem")
    answer = row.get("answer") or (extract_boxed(str(row.get("solution", ""))) if row.get("solution") else None)
    if answer is None:
        raise _bad(row, "math", "needs an answer column or a solution with \\boxed{...}")
    solution = row.get("solution") or f"The answer is $\\boxed{{{answer}}}$."
    return _gen(row, i, row["problem"], answer, solution, row.get("subject", row.get("type", "")))


def _qa(row, i):
    _need(row, "qa", "question", "answer")
    return _gen(row, i, row["question"], row["answer"], row["answer"], row.get("subject", ""))


def _text(row, i):
    _need(row, "text", "text")
    return {"id": str(row.get("id", i)), "subject": "", "text": str(row["text"])}


def _first(row, *names):
    return next((row[n] for n in names if row.get(n) is not None), None)


def _reference(row, i):
    prompt = _first(row, "prompt", "query", "question", "input", "instruction")
    reference = _first(row, "reference", "response", "answer", "output")
    if prompt is None or reference is None:
        _need(row, "reference", "prompt (or query/question/input)", "reference (or response/answer/output)")
    return {"id": str(row.get("id", i)), "subject": str(row.get("subject", "")), "prompt": str(prompt),
            "reference": str(reference)}


def _humaneval(row, i):
    _need(row, "humaneval", "prompt", "test", "entry_point")
    return {"id": str(row.get("task_id", i)), "subject": "", "prompt": row["prompt"], "test": row["test"],
            "entry_point": row["entry_point"]}


def _mbpp(row, i):
    _need(row, "mbpp", "text", "test_list")
    tests = _listed(row["test_list"])
    if not isinstance(tests, list) or not tests:
        raise _bad(row, "mbpp", "test_list must be a non-empty list of assert statements")
    return {"id": str(row.get("task_id", i)), "subject": "", "prompt": row["text"], "test_list": tests,
            "test_setup_code": row.get("test_setup_code") or "", "code": row.get("code") or ""}


READERS = {
    "mmlu": _mmlu, "ceval": _ceval, "arc": _arc, "hellaswag": _hellaswag, "truthfulqa_mc1": _truthfulqa,
    "piqa": _piqa, "winogrande": _winogrande, "gsm8k": _gsm8k, "math": _math, "qa": _qa, "text": _text,
    "reference": _reference, "humaneval": _humaneval, "mbpp": _mbpp,
}


def to_items(rows: list[dict], layout: str, columns: dict[str, str] | None = None) -> list[dict]:
    """The items of ``rows`` (renamed by ``columns`` first); ids made unique by position when they repeat
    (e.g. two subjects' files both numbering from 0)."""
    read = READERS[layout]
    items = []
    for i, row in enumerate(rows):
        if columns:
            row = {columns.get(k, k): v for k, v in row.items()}
        items.append(read(row, i))
    if len({it["id"] for it in items}) != len(items):
        for i, it in enumerate(items):
            it["id"] = f"{i}:{it['id']}"
    return items
