"""Running one benchmark task over its items: batches, a progress bar, and a cache that makes it resumable.

A task (:class:`Task`) scores a batch of items with an :class:`~swiftkit.evaluate.model.EvalModel` and
turns the per-item results into metrics. :func:`run_task` feeds it the items a batch at a time; each
batch's results are appended to a JSON-lines cache file as soon as they exist, so a rerun of the same
evaluation (same model, benchmark, items and settings: the cache key) skips what is done and
continues after a crash. The progress bar (tqdm, on stderr) shows items/s and the time left.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from swiftkit.evaluate.model import EvalModel


@runtime_checkable
class Task(Protocol):
    """One benchmark's items and how to score them."""

    name: str
    primary: str  # the metric reports compare (a key of aggregate()'s result)
    higher_is_better: bool

    def score(self, model: EvalModel, items: list[dict]) -> list[dict]:
        """One JSON-serialisable result per item, in order, each with the item's ``id`` and its value of
        the primary metric under ``"score"`` (``None`` for tasks that only score the whole corpus)."""

    def aggregate(self, results: list[dict]) -> dict[str, float]:
        """The task's metrics from every item's result (in item order)."""


def cache_key(**parts) -> str:
    """A short stable hash of what decides an evaluation's per-item results."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ResultCache:
    """Per-item results of one task run, appended to ``path`` (JSON lines) as batches finish."""

    def __init__(self, path: Path | None):
        self.path = path
        self.done: dict[str, dict] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut short by a crash: everything after it is scored again
                self.done[str(row["id"])] = row

    def add(self, results: list[dict]) -> None:
        for row in results:
            self.done[str(row["id"])] = row
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            for row in results:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()


def _progress(total: int, initial: int, label: str, enabled: bool):
    from tqdm.auto import tqdm  # defers tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="item", file=sys.stderr, dynamic_ncols=True,
                disable=not enabled, leave=False)


def metrics_line(metrics: dict) -> str:
    """``name=value, ...`` of a benchmark's metrics for the console (per-subject ``acc/<subject>`` values stay
    in metrics.json)."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items() if "/" not in k)


def run_task(task: Task, model: EvalModel, items: list[dict], *, batch_size: int = 8, cache_path: Path | None = None,
             progress: bool = True, on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Score every item (those in the cache are not scored again) and aggregate.

    Returns ``{"metrics": {..., "num_samples"}, "samples": [per-item results], "primary", "item_scores",
    "higher_is_better"}``: ``item_scores`` are the per-item primary values (``None`` when the task scores
    only the corpus), in item order, which the comparison report bootstraps over.
    """
    ids = [str(item["id"]) for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"benchmark {task.name!r}: item ids are not unique")
    cache = ResultCache(cache_path)
    todo = [item for item in items if str(item["id"]) not in cache.done]
    if cache.done and todo != items:
        print(f"[swiftkit] eval {task.name}: {len(items) - len(todo)} of {len(items)} items from the cache "
              f"({cache_path})", file=sys.stderr)
    bar = _progress(len(items), len(items) - len(todo), task.name, progress)
    try:
        for first in range(0, len(todo), max(1, batch_size)):
            batch = todo[first:first + batch_size]
            results = task.score(model, batch)
            if len(results) != len(batch):
                raise RuntimeError(f"benchmark {task.name!r} scored {len(results)} items of a batch of {len(batch)}")
            cache.add(results)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(len(items) - len(todo) + first + len(batch), len(items))
    finally:
        bar.close()
    samples = [cache.done[i] for i in ids]
    metrics = task.aggregate(samples) if samples else {}
    scores = [s.get("score") for s in samples]
    return {"metrics": {**metrics, "num_samples": len(samples)}, "samples": samples, "primary": task.primary,
            "item_scores": None if any(v is None for v in scores) else scores,
            "higher_is_better": task.higher_is_better}
