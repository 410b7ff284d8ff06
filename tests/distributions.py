"""Helpers for tests that pip-install a plugin distribution into the running environment.

Builds happen from a copy (no build/ or *.egg-info left in the source tree), offline
(``--no-index --no-build-isolation --no-deps``), and the caller always uninstalls.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

TRAIN_ROWS = [
    {"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi, how can I help?"}]},
    {"query": "What is 1+1?", "response": "It is 2."},
    {"instruction": "Name a colour.", "input": "", "output": "Blue, like the sea and the sky."},
    {"query": "Write a poem about the sea.", "response": "The sea and the sky are one."},
]


def pip(*args: str) -> None:
    """Run pip in this interpreter; fail the test with pip's output when it fails."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"


def build_copy(src: Path, dest_parent: Path) -> Path:
    """A copy of the distribution's sources to build from (its tests are not needed)."""
    dest = dest_parent / src.name
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
    return dest


def install_offline(path: Path) -> None:
    pip("install", "--no-index", "--no-build-isolation", "--no-deps", str(path))


def write_train_file(path: Path, copies: int = 2) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in TRAIN_ROWS * copies))
    return path
