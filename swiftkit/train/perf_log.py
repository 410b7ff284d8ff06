"""``perf_log``: where each optimizer step's time goes, and the tokens per second it trains.

Every ``--perf_log_steps`` steps one JSON line is appended to ``perf.jsonl`` in the run folder: the
step (the last of the window), how many steps the window holds, its real (non-padding) input tokens and
tokens/s, and the mean per step of

- ``step_s``: the whole step, from the end of the previous step's bookkeeping to the end of this step;
- ``data_wait_s``: getting the step's batches (transformers fetches all micro-batches of a step before
  it starts: ``on_step_begin`` comes after them);
- ``forward_backward_s``: every micro-batch's forward and backward, and gradient clipping
  (``on_step_begin`` to ``on_pre_optimizer_step``);
- ``optimizer_s``: the optimizer update (``on_pre_optimizer_step`` to ``on_optimizer_step``);
- ``other_s``: the rest of the step (learning-rate schedule, zeroing gradients, step-end callbacks).

The four parts add up to ``step_s``. Logging, evaluation and checkpoint saves that follow a step are
not part of any step (the next step's clock starts after them); their total is ``outside_steps_s`` in
``perf_summary.json`` (so ``steps_s + outside_steps_s`` is the training time), which is written when
training ends together with the totals, the median and
90th-percentile step time and each part's share of step time (also printed as one line). Tokens are
counted at the model's forward in training mode: the attention mask's sum for padded rows, the
input ids of a padding-free row. On a CUDA device the clock is read after ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

PARTS = ("data_wait_s", "forward_backward_s", "optimizer_s", "other_s")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class PerfLog(TrainerCallback):
    """Times each optimizer step's parts and counts its tokens; writes perf.jsonl and perf_summary.json."""

    def __init__(self, every: int = 1):
        self.every = max(1, every)
        self.hook = None

    # -- clocks and tokens -------------------------------------------------------------------------

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _count_tokens(self, module, args, kwargs):
        if not (module.training and torch.is_grad_enabled()):
            return
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if mask is not None:
            self.pending.append(mask.sum())
        elif ids is not None:
            self.pending.append(ids.numel())

    # -- events ------------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.path = Path(args.output_dir) / "perf.jsonl"
        self.summary_path = Path(args.output_dir) / "perf_summary.json"
        self.cuda = model is not None and torch.cuda.is_available() and any(p.is_cuda for p in model.parameters())
        self.pending: list = []
        self.window: list[dict] = []
        self.steps: list[dict] = []
        self.outside = 0.0
        if self.hook is not None:
            self.hook.remove()
        self.hook = model.register_forward_pre_hook(self._count_tokens, with_kwargs=True) if model is not None else None
        self.mark = self._now()
        self.ended_at = None  # end of the last step (None before the first)
        self.begin = self.pre = self.opt = None

    def on_step_begin(self, args, state, control, **kwargs):
        self.begin = self._now()
        self.pending = []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.pre = self._now()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.opt = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        end = self._now()
        if self.begin is None:
            return
        pre = self.pre if self.pre is not None else end
        opt = self.opt if self.opt is not None else pre
        tokens = int(sum(int(t) for t in self.pending))
        record = {"step_s": end - self.mark, "data_wait_s": self.begin - self.mark,
                  "forward_backward_s": pre - self.begin, "optimizer_s": opt - pre, "other_s": end - opt,
                  "tokens": tokens}
        self.window.append(record)
        self.steps.append(record)
        self.mark = self.ended_at = end
        self.begin = self.pre = self.opt = None
        if state.global_step % self.every == 0:
            self._write(state.global_step)

    def _after_step(self) -> None:
        """Logging, evaluation and saving happen after a step: move the next step's start past them."""
        now = self._now()
        if self.ended_at is not None and self.begin is None:
            self.outside += now - self.mark
            self.mark = now

    def on_log(self, args, state, control, **kwargs):
        self._after_step()

    def on_evaluate(self, args, state, control, **kwargs):
        self._after_step()

    def on_save(self, args, state, control, **kwargs):
        self._after_step()

    def _write(self, step: int) -> None:
        if not self.window:
            return
        n, seconds = len(self.window), sum(r["step_s"] for r in self.window)
        tokens = sum(r["tokens"] for r in self.window)
        record = {"step": step, "steps": n, "tokens": tokens,
                  "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else None,
                  **{key: round(sum(r[key] for r in self.window) / n, 6) for key in ("step_s", *PARTS)}}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        self.window = []

    def on_train_end(self, args, state, control, **kwargs):
        if self.hook is not None:
            self.hook.remove()
            self.hook = None
        self._write(state.global_step)
        if not self.steps:
            return
        seconds = sum(r["step_s"] for r in self.steps)
        tokens = sum(r["tokens"] for r in self.steps)
        durations = [r["step_s"] for r in self.steps]
        summary = {
            "steps": len(self.steps), "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else None,
            "steps_s": round(seconds, 4), "outside_steps_s": round(self.outside, 4),
            "mean_step_s": round(seconds / len(self.steps), 6),
            "p50_step_s": round(_quantile(durations, 0.5), 6), "p90_step_s": round(_quantile(durations, 0.9), 6),
            "share": {key: round(sum(r[key] for r in self.steps) / seconds, 4) if seconds > 0 else None
                      for key in PARTS},
        }
        tmp = self.summary_path.with_name(f".{self.summary_path.name}.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.summary_path)
        shares = ", ".join(f"{key[:-2].replace('_', ' ')} {100 * (summary['share'][key] or 0):.0f}%" for key in PARTS)
        print(f"[swiftkit] perf_log: {summary['steps']} steps, {summary['tokens_per_s']} tokens/s, "
              f"{summary['mean_step_s'] * 1000:.1f} ms per step ({shares}); {self.path}", file=sys.stderr)
