"""Trainer callbacks that write a run's records: logging.jsonl, loss-curve PNG, args.json per checkpoint.

They observe the transformers Trainer through its public callback events; none changes training.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TokenCounter:
    """Counts the real (non-padding) tokens the collator hands to the model."""

    def __init__(self):
        self.tokens = 0


class CountingCollator:
    """Wraps a collator and counts real tokens per batch (input_ids that are not padding)."""

    def __init__(self, collator, counter: TokenCounter):
        self.collator = collator
        self.counter = counter

    def __call__(self, features):
        self.counter.tokens += sum(len(f["input_ids"]) for f in features)
        return self.collator(features)


class JsonlLoggingCallback(TrainerCallback):
    """Appends every log event (loss, lr, eval, throughput, memory) to ``logging.jsonl``."""

    def __init__(self, path: Path, counter: TokenCounter):
        self.path = path
        self.counter = counter
        self.start = None
        self.start_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        self.start_tokens = self.counter.tokens

    def on_log(self, args, state, control, logs=None, **kwargs):
        elapsed = time.perf_counter() - (self.start or time.perf_counter())
        tokens = self.counter.tokens - self.start_tokens
        record = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            **(logs or {}),
            "train_tokens": tokens,
            "train_tokens_per_s": round(tokens / elapsed, 2) if elapsed > 0 else None,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "elapsed_s": round(elapsed, 2),
        }
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def plot_loss(log_history: list[dict], path: Path) -> Path | None:
    """Draw training (and eval) loss against step into a PNG; None when nothing was logged."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", marker="." if len(train) < 50 else None)
    if evals:
        ax.plot(*zip(*evals), label="eval loss", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


class RunFilesCallback(TrainerCallback):
    """After each checkpoint save: copy args.json into it and refresh the loss plot."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_save(self, args, state, control, **kwargs):
        ckpt = self.run_dir / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            shutil.copy2(self.run_dir / "args.json", ckpt / "args.json")
        plot_loss(state.log_history, self.run_dir / "loss.png")

    def on_train_end(self, args, state, control, **kwargs):
        plot_loss(state.log_history, self.run_dir / "loss.png")
