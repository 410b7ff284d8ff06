"""A registered benchmark run natively: load its rows (hub or local), make items, pick the task, run it.

:class:`CardBenchmark` is what the built-in plugin answers ``swiftkit_get_eval_benchmark`` with for a
registered card. ``NAME=PATH`` runs the card on a local file or folder in the card's native layout: a
folder's files are chosen by split (``test.jsonl``, ``chemistry_val.csv``, ...) and its few-shot split
(``dev``) when it has one; a single file is the test split, and its own other items give the few-shot
examples. :class:`~swiftkit.evaluate.settings.EvalSettings` holds everything besides the card that
decides the scores (and so the cache key).
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

from swiftkit.data.errors import DatasetError
from swiftkit.data.hub import load_hub_rows
from swiftkit.data.readers import SUPPORTED_SUFFIXES, data_files, iter_file, read_file
from swiftkit.evaluate.cards import BenchmarkCard, BenchmarkError
from swiftkit.evaluate.layouts import to_items
from swiftkit.evaluate.runner import cache_key, run_task
from swiftkit.evaluate.settings import EvalSettings, settings_from_eval_config
from swiftkit.evaluate.tasks import GenerationTask, MultipleChoiceTask, PerplexityTask
from swiftkit.evaluate.text_tasks import make_text_task


def _split_word(path: Path, folder: Path) -> str:
    stem = path.relative_to(folder).with_suffix("").as_posix()
    return re.sub(r"[_\-/.]?(train|test|validation|valid|val|dev|eval)$", "", stem, flags=re.IGNORECASE)


def _local_rows(path: Path, split: str, *, required: bool = True) -> list[dict]:
    """Rows of a local benchmark file, or of a folder's files of ``split`` (each row's ``_subset`` is its
    file's name without the split word, e.g. ``chemistry`` for ``chemistry_val.csv``)."""
    if path.is_file():
        return read_file(path)
    try:
        files = data_files(path, None, split)
    except DatasetError:
        if required:
            raise
        return []
    rows = []
    for f in files:
        subset = _split_word(f, path)
        rows += [{**row, "_subset": subset} for row in iter_file(f)]
    return rows


class CardBenchmark:
    """A registered benchmark (card), on the hub data or on ``path``."""

    def __init__(self, card: BenchmarkCard, path: str | None = None, label: str | None = None):
        self.card, self.path = card, Path(path).expanduser() if path else None
        self.label = label or (f"{card.name}={path}" if path else card.name)
        if self.path is not None and not self.path.exists():
            raise BenchmarkError(f"--eval_dataset {self.label}: {self.path} does not exist")
        if self.path is not None and self.path.is_file() and self.path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise BenchmarkError(f"--eval_dataset {self.label}: {self.path.name} is not a data file "
                                 f"({', '.join(SUPPORTED_SUFFIXES)})")
        if self.path is None and not (card.ms_id or card.hf_id):
            raise BenchmarkError(f"benchmark {card.name!r} has no hub data: run it on a local file or folder with "
                                 f"--eval_dataset {card.name}=PATH ({card.description})")

    # -- data -------------------------------------------------------------------------------------

    def _hub_rows(self, split: str, subsets: list[str], settings: EvalSettings) -> list[dict]:
        card = self.card
        use_hf = settings.use_hf or not card.ms_id
        dataset_id = card.hf_id if use_hf else card.ms_id
        if dataset_id is None:
            raise BenchmarkError(f"benchmark {card.name!r} has no {'Hugging Face' if use_hf else 'ModelScope'} id")
        rows = []
        for subset in subsets or [None]:
            got = load_hub_rows(dataset_id, use_hf=use_hf, subset=subset, split=split,
                                cache_dir=settings.hub_cache_dir)
            rows += [{**row, "_subset": subset or ""} for row in got]
        return rows

    def rows(self, settings: EvalSettings, *, few_shot: bool = False) -> list[dict]:
        over = settings.overrides
        split = self.card.few_shot_split if few_shot else over.get("split", self.card.split)
        if few_shot and split is None:
            return []
        if self.path is not None:
            if few_shot and self.path.is_file():
                return []
            return _local_rows(self.path, split, required=not few_shot)
        return self._hub_rows(split, list(over.get("subsets", self.card.subsets)), settings)

    def items(self, settings: EvalSettings) -> tuple[list[dict], list[dict]]:
        """``(items scored, few-shot pool)``; the pool is the items themselves when there is no few-shot split."""
        card = self.card
        rows = self.rows(settings)
        if not rows:
            raise BenchmarkError(f"benchmark {self.label}: no rows")
        items = to_items(rows, card.layout, card.columns)
        for item, row in zip(items, rows):
            item["subject"] = item["subject"] or str(row.get("_subset") or "")
        shots = to_items(self.rows(settings, few_shot=True), card.layout, card.columns) if self.shots(settings) else []
        for shot in shots:  # ids of another split: never taken for the scored item itself
            shot["id"] = f"{card.few_shot_split}:{shot['id']}"
        pool = shots or items
        if settings.limit is not None:
            items = items[: settings.limit]
        return items, pool

    def shots(self, settings: EvalSettings) -> int:
        over = settings.overrides.get("few_shot")
        return int(over if over is not None else settings.few_shot if settings.few_shot is not None
                   else self.card.few_shot)

    # -- scoring ----------------------------------------------------------------------------------

    def task(self, model, settings: EvalSettings, pool: list[dict]):
        card, k = self.card, self.shots(settings)
        max_new_tokens = settings.max_new_tokens or card.max_new_tokens
        if card.kind == "multiple_choice":
            chat = settings.chat
            if chat is None or chat:
                can = model.render([{"role": "user", "content": "x"}]) is not None
                if chat and not can:
                    raise BenchmarkError(f"benchmark {self.label}: --eval_chat_template true, but {model.name} has "
                                         "no chat template here (a server renders its own): use false")
                chat = can
            return MultipleChoiceTask(self.card.name, shots=pool, few_shot=k, chat=chat,
                                      raw_text=card.layout == "hellaswag", primary=card.primary)
        if card.kind == "generation":
            return GenerationTask(self.card.name, shots=pool, few_shot=k, extractor=card.extractor,
                                  pattern=card.pattern, instruction=card.instruction,
                                  max_new_tokens=max_new_tokens, generation=settings.generation)
        if card.kind == "perplexity":
            return PerplexityTask(self.card.name)
        return make_text_task(self.card.name, card, settings, max_new_tokens)

    def check(self, settings: EvalSettings) -> None:
        """What can be refused before any data or weights load."""
        if self.card.kind == "code" and not settings.allow_code_execution:
            raise BenchmarkError(f"benchmark {self.label} executes the generated programs: pass --allow_code_execution "
                                 "(each program runs in a subprocess with --eval_code_timeout and "
                                 "--eval_code_memory_mb)")

    def run(self, model, settings: EvalSettings, prepared: tuple[list[dict], list[dict]] | None = None) -> dict:
        """Score ``model``; ``prepared`` is ``items(settings)`` when the caller loaded them already."""
        self.check(settings)
        items, pool = prepared if prepared is not None else self.items(settings)
        task = self.task(model, settings, pool)
        cache = None
        if settings.cache_dir is not None:
            key = cache_key(model=model.name, card=asdict(self.card), path=str(self.path),
                            settings=settings.score_key(), chat=getattr(task, "chat", None))
            cache = Path(settings.cache_dir) / f"{self.card.name}-{key}.jsonl"
        result = run_task(task, model, items, batch_size=settings.batch_size, cache_path=cache,
                          progress=settings.progress)
        result["benchmark"] = self.label
        return result

    def evaluate(self, model, config) -> dict:
        """The ``swiftkit_get_eval_benchmark`` contract (``config``: an EvalConfig)."""
        return self.run(model, settings_from_eval_config(config, self.card.name))
