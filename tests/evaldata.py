"""Small benchmark files in each native layout, written into a test's folder, and a scripted EvalModel.

The rows are made up here (questions with known answers); the layouts are those the benchmark cards
name (MMLU, C-Eval/general_mcq, ARC, HellaSwag, TruthfulQA MC1, PIQA, Winogrande, GSM8K, MATH, text,
reference text, HumanEval, MBPP).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


MMLU_ROWS = [
    {"question": "What is 2 + 2?", "subject": "arithmetic", "choices": ["3", "4", "5", "6"], "answer": 1},
    {"question": "What is 3 * 3?", "subject": "arithmetic", "choices": ["9", "6", "12", "3"], "answer": 0},
    {"question": "Which is a primary colour?", "subject": "art", "choices": ["green", "purple", "red", "orange"],
     "answer": 2},
    {"question": "Which planet is largest?", "subject": "astronomy", "choices": ["Mars", "Venus", "Earth", "Jupiter"],
     "answer": "D"},
]

GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
     "answer": "Tom starts with 3 apples.\n3 + 4 = 7\n#### 7"},
    {"question": "A box holds 12 pens. How many pens are in 3 boxes?",
     "answer": "Each box holds 12 pens.\n12 * 3 = 36\n#### 36"},
    {"question": "Sara had 1,000 stamps and gave away 250. How many are left?",
     "answer": "1,000 - 250 = 750\n#### 750"},
]

MATH_ROWS = [
    {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "solution": "We get $\\boxed{\\frac{3}{4}}$.",
     "type": "Prealgebra"},
    {"problem": "Solve $x + 1 = 3$.", "solution": "So $x = \\boxed{2}$.", "type": "Algebra"},
]


def general_mcq_folder(root: Path, subset: str = "quiz") -> Path:
    """evalscope's general_mcq layout: <subset>_dev.csv (few-shot) and <subset>_val.csv (scored)."""
    folder = root / "general_mcq"
    dev = [{"id": 0, "question": "1 + 1 = ?", "A": "2", "B": "3", "C": "4", "D": "5", "answer": "A"}]
    val = [
        {"id": 0, "question": "2 + 2 = ?", "A": "3", "B": "4", "C": "5", "D": "6", "answer": "B"},
        {"id": 1, "question": "The sky on a clear day is", "A": "green", "B": "red", "C": "blue", "D": "black",
         "answer": "C"},
        {"id": 2, "question": "Water freezes at (Celsius)", "A": "0", "B": "50", "C": "100", "D": "-50",
         "answer": "A"},
    ]
    write_csv(folder / f"{subset}_dev.csv", dev)
    write_csv(folder / f"{subset}_val.csv", val)
    return folder


class ScriptedModel:
    """An EvalModel whose outputs are fixed by the test: replies by prompt text, log-likelihoods by
    continuation text (or by ``(context, continuation)``), whole-text log-likelihoods by text."""

    def __init__(self, *, replies=None, loglikelihoods=None, rolling=None, chat: bool = False, default_reply=""):
        self.name = "scripted"
        self.replies = replies or {}
        self.loglikelihoods = loglikelihoods or {}
        self.rolling = rolling or {}
        self.chat = chat
        self.default_reply = default_reply
        self.calls = {"generate": 0, "loglikelihood": 0}

    def render(self, messages):
        if not self.chat:
            return None
        return "".join(f"<{m['role']}>{m['content']}\n" for m in messages) + "<assistant>"

    def generate(self, conversations, **generation):
        self.calls["generate"] += 1
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            out.append(next((r for key, r in self.replies.items() if key in text), self.default_reply))
        return out

    def loglikelihood(self, requests):
        self.calls["loglikelihood"] += 1
        out = []
        for context, continuation in requests:
            if callable(self.loglikelihoods):
                out.append((float(self.loglikelihoods(context, continuation)), False))
                continue
            value = self.loglikelihoods.get((context, continuation), self.loglikelihoods.get(continuation.strip()))
            if value is None:
                raise KeyError(f"no scripted log-likelihood for {continuation!r}")
            out.append((float(value), False))
        return out

    def rolling_loglikelihood(self, texts):
        return [self.rolling[t] for t in texts]
