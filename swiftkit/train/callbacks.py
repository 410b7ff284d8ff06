"""Trainer callbacks that write a run's records: logging.jsonl, loss-curve PNG, args.json per checkpoint.

They observe the transformers Trainer through its public callback events; none changes training.
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from swiftkit.core import distributed
from swiftkit.core.distributed import ONE_RANK, Ranks


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the peak of this program's own memory. ``getrusage``'s
    ``ru_maxrss`` is not: it survives ``exec``, so a run started by a large process (a test session, a
    web UI) reports its parent's peak when that is higher. Elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class TokenCounter:
    """Counts the real (non-padding) tokens of the batches the trainer has used.

    The collator records every batch it builds; the data loader builds one ahead, so only the
    first ``consumed`` batches (advanced by :class:`JsonlLoggingCallback` at the end of each
    micro-step) count: a run stopped by --max_steps mid-epoch does not count the batch it never used.
    Evaluation batches go through the same collator between steps; they are dropped again when the
    evaluation ends.
    """

    def __init__(self):
        self.batches: list[int] = []
        self.consumed = 0

    def add(self, tokens: int) -> None:
        self.batches.append(tokens)

    @property
    def tokens(self) -> int:
        return sum(self.batches[:self.consumed])


def _input_tokens(features) -> int:
    return sum(len(f["input_ids"]) for f in features)


class CountingCollator:
    """Wraps a collator and counts real tokens per batch (by default the unpadded ``input_ids``;
    ``count(features)`` counts other layouts, e.g. preference pairs)."""

    def __init__(self, collator, counter: TokenCounter, count=_input_tokens):
        self.collator = collator
        self.counter = counter
        self.count = count

    def __call__(self, features):
        self.counter.add(self.count(features))
        return self.collator(features)


class JsonlLoggingCallback(TrainerCallback):
    """Appends every log event (loss, lr, eval, throughput, memory) to ``logging.jsonl``.

    In a distributed run (``place``) every rank takes part in each log event: tokens and tokens/s are
    the sums over ranks, peak RSS the sum too, and ``ranks`` holds each rank's figures; rank 0 (the one
    with a ``path``) writes."""

    def __init__(self, path: Path | None, counter: TokenCounter, place: Ranks = ONE_RANK):
        self.path = path
        self.place = place
        self.counter = counter
        self.start = None
        self.start_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        self.start_tokens = self.counter.tokens

    def on_substep_end(self, args, state, control, **kwargs):
        self.counter.consumed += 1  # a micro-batch inside gradient accumulation

    def on_step_end(self, args, state, control, **kwargs):
        self.counter.consumed += 1  # the step's last micro-batch
        self.built_before_eval = len(self.counter.batches)

    def on_evaluate(self, args, state, control, **kwargs):
        del self.counter.batches[getattr(self, "built_before_eval", len(self.counter.batches)):]

    def on_log(self, args, state, control, logs=None, **kwargs):
        elapsed = time.perf_counter() - (self.start or time.perf_counter())
        mine = (self.counter.tokens - self.start_tokens, round(peak_rss_mb(), 1))
        every = distributed.gathered(mine, self.place)  # a collective: every rank logs at the same events
        if self.path is None:
            return
        tokens, peaks = (sum(column) for column in zip(*every))
        record = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            **(logs or {}),
            "train_tokens": tokens,
            "train_tokens_per_s": round(tokens / elapsed, 2) if elapsed > 0 else None,
            "peak_rss_mb": round(peaks, 1),
            "elapsed_s": round(elapsed, 2),
        }
        if self.place.distributed:
            record["ranks"] = {"train_tokens": [t for t, _ in every], "peak_rss_mb": [p for _, p in every]}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def plot_loss(log_history: list[dict], path: Path) -> Path | None:
    """Draw training (and eval) loss against step into a PNG; None when nothing was logged."""
    return plot_metrics(log_history, ("loss",), path, ylabel="loss")


def plot_metrics(log_history: list[dict], keys, path: Path, ylabel: str = "value") -> Path | None:
    """Draw each logged ``key`` (and its ``eval_`` twin) against step into one PNG; None when none
    of them was logged."""
    series = []
    for key in keys:
        for name, label in ((key, f"train {key}" if key == "loss" else key), (f"eval_{key}", f"eval {key}")):
            points = [(h["step"], h[name]) for h in log_history if name in h and "step" in h]
            if points:
                series.append((label, points))
    if not series:
        return None
    import matplotlib  # defers matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # defers matplotlib

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in series:
        ax.plot(*zip(*points), label=label, marker="." if len(points) < 50 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


class RunFilesCallback(TrainerCallback):
    """After each checkpoint save: copy args.json into it and refresh the plots: loss.png, plus one
    PNG per entry of ``plots`` (file name -> logged keys drawn together)."""

    def __init__(self, run_dir: Path, plots: dict[str, tuple[str, ...]] | None = None):
        self.run_dir = run_dir
        self.plots = plots or {}

    def _draw(self, state) -> None:
        plot_loss(state.log_history, self.run_dir / "loss.png")
        for name, keys in self.plots.items():
            plot_metrics(state.log_history, keys, self.run_dir / name, ylabel=Path(name).stem)

    def on_save(self, args, state, control, **kwargs):
        ckpt = self.run_dir / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            shutil.copy2(self.run_dir / "args.json", ckpt / "args.json")
        self._draw(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._draw(state)
