"""Built-in reward functions for RL training (GRPO and friends), registered through the
``swiftkit_register_reward_funcs`` hook like a plugin's.

Contract (the one TRL's ``GRPOTrainer`` calls): ``fn(prompts, completions, **columns) -> list[float]``,
one score per completion; a completion is a string or, for conversational data, a list of
messages whose last ``content`` is the reply; extra dataset columns arrive as keyword lists.
"""

from __future__ import annotations

import re

_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def completion_text(completion) -> str:
    """The reply text of a plain or conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


def format_reward(prompts, completions, **columns) -> list[float]:
    """1.0 when the reply is ``<think>...</think><answer>...</answer>`` and nothing else, else 0.0."""
    return [1.0 if _FORMAT.match(completion_text(c)) else 0.0 for c in completions]


def _normalise(text: str) -> str:
    text = text.strip().lower().replace(",", "")
    text = re.sub(r"\s+", " ", text).rstrip(".")
    try:
        return repr(float(text))
    except ValueError:
        return text


def accuracy_reward(prompts, completions, solution=None, **columns) -> list[float]:
    """1.0 when the reply's answer (inside ``<answer>`` if present) equals the row's ``solution``.

    Comparison ignores case, surrounding space, thousands separators and a final period; numbers
    compare by value (``"3.0"`` equals ``"3"``). Rows need a ``solution`` column.
    """
    if solution is None:
        raise ValueError("the accuracy reward needs a 'solution' column in the dataset")
    scores = []
    for completion, expected in zip(completions, solution, strict=True):
        text = completion_text(completion)
        found = _ANSWER.search(text)
        answer = found.group(1) if found else text
        scores.append(1.0 if _normalise(answer) == _normalise(str(expected)) else 0.0)
    return scores


BUILTIN_REWARDS = {"format": format_reward, "accuracy": accuracy_reward}
