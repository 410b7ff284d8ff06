"""Every learning-rate schedule `swiftkit sft --help` lists trains for two steps, with the extra
arguments it needs given through --lr_scheduler_kwargs (and evaluation data for the schedules that
step on evaluation loss)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from test_sft_cli import ROWS, read_jsonl, write_jsonl

import swiftkit
from swiftkit.config.groups import EVAL_DRIVEN_SCHEDULERS, TRANSFORMERS_SCHEDULERS

NEEDS = {"warmup_stable_decay": {"lr_scheduler_kwargs": json.dumps({"num_decay_steps": 1})}}


def test_help_lists_every_schedule():
    out = subprocess.run([sys.executable, "-m", "swiftkit.cli.main", "sft", "--help"], capture_output=True,
                         text=True, check=True).stdout
    text = " ".join(out.split())
    for name in TRANSFORMERS_SCHEDULERS:
        assert name in text, name


@pytest.mark.parametrize("name", TRANSFORMERS_SCHEDULERS)
def test_each_schedule_trains_two_steps(name, tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "rows.jsonl", ROWS * 2)
    extra = dict(NEEDS.get(name, {}))
    if name in EVAL_DRIVEN_SCHEDULERS:
        extra.update(split_dataset_ratio=0.25, eval_steps=1)
    result = swiftkit.sft(model=str(tiny_model_dir("llama", "chatml")), dataset=[str(data)], max_steps=2,
                          output_dir=str(tmp_path / "out"), lr_scheduler_type=name, learning_rate=1e-3,
                          logging_steps=1, save_steps=2, report_to=["none"], **extra)
    assert result["global_step"] == 2 and math.isfinite(result["train_loss"])
    logs = read_jsonl(tmp_path / "out" / result["run_dir"].rsplit("/", 1)[-1] / "logging.jsonl")
    rates = [r["learning_rate"] for r in logs if "learning_rate" in r]
    assert len(rates) == 2 and all(0 <= lr <= 1e-3 for lr in rates)
    plan = json.loads((tmp_path / "out" / result["run_dir"].rsplit("/", 1)[-1] / "args.json").read_text())["plan"]
    assert plan["lr_scheduler"]["name"] == name
    if name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        assert plan["lr_scheduler"]["kwargs"] == {"min_lr_rate": 0.1}  # the documented default
