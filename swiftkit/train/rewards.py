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

from swiftkit.config import GrpoArgs, RolloutArgs
from swiftkit.core.errors import ChoiceError, ConfigError, PluginError
from swiftkit.core.plugins import guarded
from swiftkit.core.registry import closest

# Answer extraction and comparison live in the data layer so evaluation can share them; the names
# stay importable from here.
from swiftkit.data.answers import answers_match, canonical_answer, extract_answer, solution_answer  # noqa: F401
from swiftkit.train.errors import TrainError


def completion_text(completion) -> str:
    """The reply text of a plain or conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


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
