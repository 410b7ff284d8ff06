"""Reward functions for GRPO: the built-ins, math answer checking, and selecting them by name.

A registered reward (``swiftkit_register_reward_funcs``) is either

* a **function** ``fn(prompts, completions, **columns) -> list[float | None]``, called the way
  TRL's ``GRPOTrainer`` calls it: keyword arguments ``prompts``, ``completions``,
  ``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric`` and every other dataset
  column as a list with one value per completion; ``None`` means "does not apply to this sample";
* or a **class**, which is a factory: swiftkit calls ``cls(config)`` once with the run's config
  (:class:`swiftkit.config.RlhfConfig`) and uses the instance, whose ``__call__`` is such a function.
  This is how rewards read flags such as ``--format_pattern``.

:func:`resolve_reward_funcs` turns ``--reward_funcs`` names into callables for the trainer, each
named after its registered name and checked so a bad return value is an error naming the reward.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from fractions import Fraction

from swiftkit.config import GrpoArgs, RolloutArgs
from swiftkit.core.errors import ChoiceError, ConfigError, PluginError
from swiftkit.core.plugins import guarded
from swiftkit.core.registry import closest
from swiftkit.train.errors import TrainError


def completion_text(completion) -> str:
    """The reply text of a plain or conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


# --- finding the final answer ------------------------------------------------------------------

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_GSM8K = re.compile(r"####\s*([^\n]*\S)")
_PHRASE = re.compile(r"(?:final answer|the answer)(?:\s+is)?\s*[:=]?\s*([^\n]+)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
_NUMBER_IN_TEXT = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


def _last_braced(text: str, command: str) -> str | None:
    r"""The argument of the last complete ``\command{...}`` (nested braces kept), or ``\command x``."""
    start = text.rfind("\\" + command)
    while start != -1:
        i = start + len(command) + 1
        rest = text[i:]
        if rest.lstrip().startswith("{"):
            i += len(rest) - len(rest.lstrip())
            depth = 0
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return text[i + 1:j]
        elif match := re.match(r" +([^\s$]+)", rest):  # \boxed 5
            return match.group(1)
        start = text.rfind("\\" + command, 0, start)  # truncated box: try the one before
    return None


def _tagged_answer(text: str) -> str | None:
    """The answer a text marks explicitly: last ``\\boxed{}``, ``<answer>`` or GSM8K ``#### X``."""
    for command in ("boxed", "fbox"):
        boxed = _last_braced(text, command)
        if boxed is not None:
            return boxed
    for pattern in (_ANSWER_TAG, _GSM8K):
        found = pattern.findall(text)
        if found:
            return found[-1]
    return None


def extract_answer(reply: str) -> str | None:
    """The final answer of a model reply, or ``None`` when it gives none.

    Tried in order: the last ``\\boxed{...}``, the last ``<answer>...</answer>``, a GSM8K
    ``#### X`` line, the last "the answer is X" / "final answer: X" (up to the end of that
    sentence), the last number in the text.
    """
    tagged = _tagged_answer(reply)
    if tagged is not None:
        return tagged
    phrases = _PHRASE.findall(reply)
    if phrases:
        candidate = phrases[-1]
        while inner := _PHRASE.search(candidate):  # "Final answer: the answer is 5"
            candidate = inner.group(1)
        candidate = _SENTENCE_END.split(candidate, maxsplit=1)[0].strip(" *")
        if candidate:
            return candidate
    numbers_found = _NUMBER_IN_TEXT.findall(reply.replace("\u2212", "-"))
    return numbers_found[-1] if numbers_found else None


def solution_answer(solution) -> str:
    """The reference answer in a ``solution`` cell: plain (``"42"``), boxed, or a GSM8K rationale."""
    text = str(solution)
    tagged = _tagged_answer(text)
    return text if tagged is None else tagged


# --- comparing answers -------------------------------------------------------------------------

_PLAIN = r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?"
_FRAC = re.compile(r"(-?)\\frac\s*(?:\{([^{}]+)\}|(\d))\s*(?:\{([^{}]+)\}|(\d))")
_SLASH = re.compile(rf"({_PLAIN})\s*/\s*({_PLAIN})")
_WITH_UNIT = re.compile(rf"({_PLAIN})\s*[a-z]{{2,}}(?:\s+[a-z]{{2,}})*", re.IGNORECASE)
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")


def _plain_number(text: str) -> Fraction | None:
    if re.fullmatch(_PLAIN, text, re.IGNORECASE):
        return Fraction(text.replace(",", "").lower())
    return None


def _number(text: str) -> Fraction | None:
    """The exact value of a number, decimal, fraction (``a/b``, ``\\frac{a}{b}``, ``\\frac12``),
    percentage (the ``%`` is dropped) or number followed by unit words; ``None`` otherwise."""
    text = text.removesuffix("%").strip()
    if (value := _plain_number(text)) is not None:
        return value
    if frac := _FRAC.fullmatch(text):
        num, den = _number(frac.group(2) or frac.group(3)), _number(frac.group(4) or frac.group(5))
        if num is not None and den:
            return -num / den if frac.group(1) else num / den
        return None
    if slash := _SLASH.fullmatch(text):
        num, den = _plain_number(slash.group(1)), _plain_number(slash.group(2))
        return num / den if den else None
    if unit := _WITH_UNIT.fullmatch(text):
        return _plain_number(unit.group(1))
    return None


def canonical_answer(answer: str) -> Fraction | str:
    """An answer in comparable form: its exact value if it is a number, else lower-case text
    without spaces. LaTeX wrapping (``$``, ``\\(\\)``, ``\\text{}``, ``\\left``/``\\right``,
    spacing commands, ``^\\circ``), a leading ``x =`` and a trailing period are dropped first."""
    s = str(answer).replace("\u2212", "-").strip()
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", s)
    s = _TEXT_COMMAND.sub(r"\1", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "%").replace("{,}", ",")
    s = re.sub(r"\\[,;:! ]", "", s)
    s = re.sub(r"^\\[(\[]|\\[)\]]$", "", s.strip())
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\u00b0", "")
    s = s.strip().rstrip(".").strip()
    s = re.sub(r"^[a-zA-Z]\s*=\s*(?=\S)", "", s)
    value = _number(s)
    return value if value is not None else re.sub(r"\s+", "", s).lower()


def answers_match(answer: str | None, reference: str) -> bool:
    """Whether two final answers are the same: numbers by exact value, anything else as text."""
    if answer is None:
        return False
    return canonical_answer(answer) == canonical_answer(reference)


# --- built-in rewards --------------------------------------------------------------------------


def accuracy_reward(prompts, completions, solution=None, **columns) -> list[float]:
    """1.0 when the reply's final answer equals the row's `solution` (math style), else 0.0."""
    if solution is None:
        raise TrainError(
            "the accuracy reward needs a 'solution' column in the dataset (the reference answer: "
            "'42', a GSM8K rationale ending in '#### 42', or text with \\boxed{42})"
        )
    if len(solution) != len(completions):
        raise TrainError(f"the accuracy reward got {len(solution)} 'solution' values for {len(completions)} "
                         "completions")
    scores = []
    for i, (completion, expected) in enumerate(zip(completions, solution)):
        if expected is None or not str(expected).strip():
            raise TrainError(f"the accuracy reward needs a 'solution' in every row; row {i} of the batch has none")
        found = extract_answer(completion_text(completion))
        scores.append(1.0 if answers_match(found, solution_answer(expected)) else 0.0)
    return scores


def _rlhf_group(config, name: str):
    """A flag group (``grpo``, ``rollout``) of the `swiftkit rlhf` config ``config``; the group's
    defaults when there is no config (Python API)."""

    if config is None:
        return {"grpo": GrpoArgs, "rollout": RolloutArgs}[name]()
    if not hasattr(config, name):
        raise TrainError(f"this reward reads the `swiftkit rlhf` flags; got a {type(config).__name__} config")
    return getattr(config, name)


class FormatReward:
    """1.0 when the whole reply matches --format_pattern (DOTALL), else 0.0."""

    def __init__(self, config):
        pattern = _rlhf_group(config, "grpo").format_pattern
        try:
            self.pattern = re.compile(pattern, re.DOTALL)
        except re.error as exc:
            raise ConfigError(f"--format_pattern {pattern!r} is not a valid regular expression: {exc}") from exc

    def __call__(self, prompts, completions, **columns) -> list[float]:
        return [1.0 if self.pattern.fullmatch(completion_text(c)) else 0.0 for c in completions]


class LengthReward:
    """0 up to 3/4 of --max_completion_length tokens, then falling linearly to -1 at the limit."""

    def __init__(self, config):
        self.max_length = _rlhf_group(config, "rollout").max_completion_length
        if self.max_length < 1:
            raise ConfigError(f"the length reward needs --max_completion_length >= 1, got {self.max_length}")
        self.buffer = max(1, self.max_length // 4)

    def __call__(self, prompts, completions, completion_ids=None, **columns) -> list[float]:
        if completion_ids is not None:
            lengths = [len(ids) for ids in completion_ids]
        else:  # called outside the trainer: whitespace-separated words stand in for tokens
            lengths = [len(completion_text(c).split()) for c in completions]
        start = self.max_length - self.buffer
        return [0.0 if n <= start else -min(1.0, (n - start) / self.buffer) for n in lengths]


BUILTIN_REWARDS = {"accuracy": accuracy_reward, "format": FormatReward, "length": LengthReward}


# --- selecting rewards by name -----------------------------------------------------------------


def _check_scores(name: str, scores, count: int) -> list[float | None]:
    """``scores`` as floats; a :class:`TrainError` naming the reward when they are not one finite
    number (or ``None``) per completion."""
    rule = f"a reward function returns a list with one float (or None) per completion, here {count}"
    if not isinstance(scores, (list, tuple)):
        raise TrainError(f"reward function {name!r} returned a {type(scores).__name__} ({scores!r:.80}); {rule}")
    if len(scores) != count:
        raise TrainError(f"reward function {name!r} returned {len(scores)} scores for {count} completions; {rule}")
    out: list[float | None] = []
    for i, score in enumerate(scores):
        if score is not None and not isinstance(score, numbers.Real):
            raise TrainError(f"reward function {name!r} returned {score!r:.80} ({type(score).__name__}) "
                             f"for completion {i}; {rule}")
        if score is not None and not math.isfinite(score):
            raise TrainError(f"reward function {name!r} returned {score!r} for completion {i}; scores must be "
                             "finite (return None for a completion the reward does not apply to)")
        out.append(None if score is None else float(score))
    return out


class CheckedReward:
    """A reward function named after its registered name whose return value is checked, and whose
    exceptions name the plugin that registered it (``label``)."""

    def __init__(self, name: str, fn, label: str):
        self.__name__ = name
        self.fn = fn
        self.label = label

    def __call__(self, prompts, completions, **columns):
        with guarded(self.label, f"reward function {self.__name__!r}"):
            scores = self.fn(prompts=prompts, completions=completions, **columns)
        return _check_scores(self.__name__, scores, len(completions))

    def __repr__(self) -> str:
        return f"<reward {self.__name__!r} from {self.label}>"


class CheckedAsyncReward(CheckedReward):
    """:class:`CheckedReward` for an ``async`` reward function (TRL runs those concurrently)."""

    async def __call__(self, prompts, completions, **columns):
        with guarded(self.label, f"reward function {self.__name__!r}"):
            scores = await self.fn(prompts=prompts, completions=completions, **columns)
        return _check_scores(self.__name__, scores, len(completions))


def _is_async(fn) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def resolve_reward_funcs(registry, names, config=None, *, describe=None) -> list[CheckedReward]:
    """The reward functions selected by ``--reward_funcs`` ``names``, in order, from the reward
    ``registry`` of the command's plugin host.

    A class entry is built with ``config`` (a factory); each result is named after its registered
    name and checks its return value. An unknown name raises :class:`swiftkit.core.choices.ChoiceError`
    listing the registered ones. ``describe(plugin name)`` labels the plugin in errors (the
    host's ``label``; default: its name).
    """
    describe = describe or (lambda plugin: f"plugin {plugin!r}")
    funcs: list[CheckedReward] = []
    for name in names:
        if name not in registry:
            valid = list(registry)
            raise ChoiceError(
                f"unknown --reward_funcs {name!r}{closest(name.lower(), valid)}; valid --reward_funcs values: "
                f"{', '.join(valid) or 'none'} (plugins add more through swiftkit_register_reward_funcs)"
            )
        key = name.lower()
        if any(f.__name__ == key for f in funcs):
            raise ChoiceError(f"--reward_funcs names {name!r} twice; give each reward once (weight it with "
                              "--reward_weights)")
        entry, label = registry.get(key), describe(registry.plugin(key) or registry.source(key) or "?")
        if isinstance(entry, type):
            with guarded(label, f"building reward function {key!r}"):
                fn = entry(config)
        else:
            fn = entry
        if not callable(fn):
            raise PluginError(
                f"reward function {key!r} ({label}) is a {type(fn).__name__}, not a function "
                "or a class whose instances are callable"
            )
        funcs.append((CheckedAsyncReward if _is_async(fn) else CheckedReward)(key, fn, label))
    return funcs
