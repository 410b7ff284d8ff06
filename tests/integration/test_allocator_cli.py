"""`swiftkit sft` from the command line runs under tcmalloc when it is installed (SWIFTKIT_ALLOCATOR)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swiftkit.core.allocator import find_library

EXE = Path(sys.executable).parent / "swiftkit"
ROW = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"}]}


def _train(tiny_model_dir, tmp_path, name, **env):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps(ROW) + "\n")
    out = tmp_path / name
    proc = subprocess.run([str(EXE), "sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(data),
                           "--output_dir", str(out), "--max_steps", "1", "--report_to", "none"],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    return proc, out


@pytest.mark.skipif(not EXE.exists(), reason="console script not installed in this environment")
def test_training_from_the_command_line_records_the_allocator_it_ran_under(tiny_model_dir, tmp_path):
    proc, out = _train(tiny_model_dir, tmp_path, "auto", SWIFTKIT_ALLOCATOR="auto", LD_PRELOAD="")
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads(next(out.glob("v*-*/manifest.json")).read_text())
    assert manifest["allocator"] == ("tcmalloc" if find_library("tcmalloc") else "system")
    assert "large alloc" not in proc.stderr

    proc, out = _train(tiny_model_dir, tmp_path, "system", SWIFTKIT_ALLOCATOR="system")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(next(out.glob("v*-*/manifest.json")).read_text())["allocator"] == "system"


@pytest.mark.skipif(not EXE.exists(), reason="console script not installed in this environment")
def test_an_unknown_allocator_is_one_line_and_no_run(tiny_model_dir, tmp_path):
    proc, out = _train(tiny_model_dir, tmp_path, "bad", SWIFTKIT_ALLOCATOR="mimalloc")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("swiftkit sft: error: SWIFTKIT_ALLOCATOR='mimalloc': choose one of auto, tcmalloc, "
                                   "jemalloc, system")
    assert not out.exists()


def test_a_script_calling_preload_allocator_starts_over_once_under_it(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import sys, swiftkit\nfrom swiftkit.core.allocator import current\nprint('start', flush=True)\n"
                      "swiftkit.preload_allocator()\nprint(current(), sys.argv[1:])\n")
    env = {**os.environ, "SWIFTKIT_ALLOCATOR": "auto", "LD_PRELOAD": ""}
    proc = subprocess.run([sys.executable, str(script), "--flag", "x"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    if find_library("tcmalloc"):
        assert proc.stdout.splitlines() == ["start", "start", "tcmalloc ['--flag', 'x']"]
    else:
        assert proc.stdout.splitlines() == ["start", "system ['--flag', 'x']"]
