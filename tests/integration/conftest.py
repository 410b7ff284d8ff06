"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest
from test_sft_cli import ROWS, run_sft, write_jsonl


@pytest.fixture(scope="session")
def trained(tiny_model_dir, tmp_path_factory):
    """checkpoint-2 of a 2-step LoRA run of `swiftkit sft` on a tiny llama with a chatml template."""
    tmp = tmp_path_factory.mktemp("trained")
    data = write_jsonl(tmp / "train.jsonl", ROWS * 2)
    run = run_sft(tiny_model_dir("llama", "chatml"), data, tmp / "out", "--max_steps", "2")
    return run / "checkpoint-2"
