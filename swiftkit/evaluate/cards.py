"""Benchmark cards: the standard suites' hub ids, subsets, splits, native layout, prompt and metric.

A card is an entry of a YAML file in ``benchmark_registry/`` (one top-level key, ``benchmarks``) or a
:class:`BenchmarkCard` a plugin registers through ``swiftkit_register_benchmarks``. The ``layout`` names
the native columns a row has (MMLU's ``question``/``subject``/``choices``/``answer``, GSM8K's
``question``/``answer`` with ``####``, ...) and so how an item is read and scored; the same layout is
what ``--eval_dataset NAME=PATH`` expects of a local file or folder, so every benchmark runs offline on
local data. Unknown keys, missing keys and wrong types are errors naming the card file and entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swiftkit.core.cards import check_mapping, read_yaml
from swiftkit.core.errors import ConfigError
from swiftkit.core.registry import closest

# layout -> task kind
LAYOUT_KINDS = {
    "mmlu": "multiple_choice",       # question, choices (list), answer (index or letter), subject
    "ceval": "multiple_choice",      # question, A, B, C, D (as many letters as given), answer (letter)
    "arc": "multiple_choice",        # question, choices {text: [...], label: [...]}, answerKey
    "hellaswag": "multiple_choice",  # ctx (or ctx_a + ctx_b), endings, label; activity_label as subject
    "truthfulqa_mc1": "multiple_choice",  # question, mc1_targets {choices, labels}
    "piqa": "multiple_choice",       # goal, sol1, sol2, label
    "winogrande": "multiple_choice",  # sentence with "_", option1, option2, answer ("1"/"2")
    "gsm8k": "generation",           # question, answer (worked solution ending "#### N")
    "math": "generation",            # problem, solution (with \boxed{...}); answer optional; type/subject
    "qa": "generation",              # question, answer (scored by --extract)
    "text": "perplexity",            # text
    "reference": "text",             # prompt (or question/input), reference (or answer/output)
    "humaneval": "code",             # task_id, prompt, test, entry_point
    "mbpp": "code",                  # task_id, text, code?, test_list, test_setup_code?
}
EXTRACTORS = ("gsm8k", "boxed", "number", "letter", "regex", "exact")
DEFAULT_METRIC = {"multiple_choice": "acc", "generation": "acc", "perplexity": "bits_per_byte", "text": "rouge_l",
                  "code": "pass@1"}


class BenchmarkError(ConfigError):
    """A benchmark card or a benchmark's data is not usable."""


@dataclass
class BenchmarkCard:
    """One registered benchmark.

    ``mode`` is how a multiple-choice layout is scored: ``loglikelihood`` (each option's log-probability,
    the default) or ``generate`` (the model writes the letter; for servers without log-probabilities).
    ``extract`` says how a generated answer is read (``gsm8k``: after ``####``, else the last number;
    ``boxed``: the last ``\\boxed{}``; ``number``; ``letter``; ``regex`` with ``pattern``; ``exact``: the
    whole reply), compared with the reference by numeric or normalised-text equivalence.
    """

    name: str
    layout: str
    ms_id: str | None = None
    hf_id: str | None = None
    subsets: list[str] = field(default_factory=list)
    split: str = "test"
    few_shot_split: str | None = None
    few_shot: int = 0
    mode: str = "loglikelihood"
    extract: str | None = None
    pattern: str | None = None
    instruction: str | None = None
    max_new_tokens: int = 512
    metric: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    description: str = ""
    override: bool = False

    @property
    def kind(self) -> str:
        kind = LAYOUT_KINDS[self.layout]
        return "generation" if kind == "multiple_choice" and self.mode == "generate" else kind

    @property
    def primary(self) -> str:
        return self.metric or DEFAULT_METRIC[self.kind]

    @property
    def extractor(self) -> str:
        if self.extract:
            return self.extract
        return {"gsm8k": "gsm8k", "math": "boxed"}.get(self.layout, "letter" if self.mode == "generate" else "exact")


_SCHEMA = {
    "name": ((str,), True, "a string"),
    "layout": ((str,), True, "a layout name"),
    "ms_id": ((str, type(None)), False, "a string or null"),
    "hf_id": ((str, type(None)), False, "a string or null"),
    "subsets": ((list,), False, "a list of subset names"),
    "split": ((str,), False, "a split name"),
    "few_shot_split": ((str, type(None)), False, "a split name or null"),
    "few_shot": ((int,), False, "an integer"),
    "mode": ((str,), False, "loglikelihood or generate"),
    "extract": ((str, type(None)), False, f"one of {', '.join(EXTRACTORS)}"),
    "pattern": ((str, type(None)), False, "a regular expression"),
    "instruction": ((str, type(None)), False, "a string"),
    "max_new_tokens": ((int,), False, "an integer"),
    "metric": ((str, type(None)), False, "a metric name"),
    "columns": ((dict,), False, "a mapping of source column -> layout column"),
    "tags": ((list,), False, "a list of strings"),
    "description": ((str,), False, "a string"),
    "override": ((bool,), False, "true or false"),
}


def check_card(card: BenchmarkCard, where: str) -> BenchmarkCard:
    """Values a card's types cannot express (known layout, mode, extractor, a pattern for regex)."""
    if card.layout not in LAYOUT_KINDS:
        raise BenchmarkError(f"{where}: unknown layout {card.layout!r}{closest(card.layout, LAYOUT_KINDS)}; "
                             f"known: {', '.join(LAYOUT_KINDS)}")
    if card.mode not in ("loglikelihood", "generate"):
        raise BenchmarkError(f"{where}: mode must be loglikelihood or generate, got {card.mode!r}")
    if card.mode == "generate" and LAYOUT_KINDS[card.layout] != "multiple_choice":
        raise BenchmarkError(f"{where}: mode generate is for multiple-choice layouts; {card.layout} always generates"
                             if LAYOUT_KINDS[card.layout] == "generation" else
                             f"{where}: mode generate is for multiple-choice layouts, not {card.layout}")
    if card.extract is not None and card.extract not in EXTRACTORS:
        raise BenchmarkError(f"{where}: extract must be one of {', '.join(EXTRACTORS)}, got {card.extract!r}")
    if card.extractor == "regex" and not card.pattern:
        raise BenchmarkError(f"{where}: extract regex needs a pattern")
    if card.few_shot < 0 or card.max_new_tokens < 1:
        raise BenchmarkError(f"{where}: few_shot must be >= 0 and max_new_tokens >= 1")
    return card


def load_card(path: Path) -> list[BenchmarkCard]:
    """Every benchmark of one YAML card file, checked."""
    data = read_yaml(path, BenchmarkError, what="benchmark card")
    check_mapping(data, {"benchmarks": ((list,), True, "a list of benchmarks")}, str(path), BenchmarkError)
    cards = []
    for i, entry in enumerate(data["benchmarks"]):
        where = f"{path}: benchmarks[{i}]" + (f" ({entry.get('name')})" if isinstance(entry, dict) else "")
        check_mapping(entry, _SCHEMA, where, BenchmarkError)
        cards.append(check_card(BenchmarkCard(**entry), where))
    return cards


def load_cards(folder: Path) -> list[tuple[BenchmarkCard, Path]]:
    return [(card, path) for path in sorted(Path(folder).glob("*.yaml")) for card in load_card(path)]

