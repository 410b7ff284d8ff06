"""Fixtures the checkpoint tests share: a tiny model, a folder of trained runs, eval prompts."""

from __future__ import annotations

import pytest
from conftest_checkpoints import copy_run, sft_run, write_jsonl


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir("llama", "chatml")


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Where a module's pristine runs are trained once (tests work on copies)."""
    return tmp_path_factory.mktemp("runs")


@pytest.fixture
def lora_run(model_dir, runs_root, tmp_path):
    """A copy of a 2-step LoRA sft run: checkpoint-1 and checkpoint-2."""
    return copy_run(sft_run(model_dir, runs_root), tmp_path / "copy")


@pytest.fixture
def prompts(tmp_path):
    return write_jsonl(tmp_path / "eval.jsonl", [{"query": "Hello!", "response": "Hi"}])
