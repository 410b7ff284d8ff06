"""Helpers for the checkpoint and output-folder tests: tiny trained runs (trained once per session,
copied per test), a pickle payload that creates a marker file when it is unpickled, mounts of small
tmpfs folders (read-only or nearly full), and running the CLI while capturing its stderr.

Imported explicitly by the test modules (``from conftest_checkpoints import ...``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from swiftkit.cli.main import main

ROWS = [
    {"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi, how can I help?"}]},
    {"messages": [{"role": "user", "content": "What is 1+1?"}, {"role": "assistant", "content": "2"}]},
    {"query": "Write a poem about the sea.", "response": "The sea and the sky."},
    {"instruction": "Add numbers", "input": "1 2", "output": "3"},
]
PAIRS = [{"prompt": p, "chosen": g, "rejected": b} for p, g, b in (
    ("Say something nice", "You are great and kind!", "Go away."),
    ("Greet me", "Hello friend, welcome!", "No."),
    ("How are you?", "I am well, thank you kindly.", "Bad, leave me alone."),
    ("Any advice?", "Be kind and patient.", "Stop asking."),
)]
PROMPTS = [{"query": f"Question number {i}: what next?"} for i in range(8)]

SFT_FLAGS = ["--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--report_to", "none",
             "--logging_steps", "1", "--save_steps", "1"]
PPO_FLAGS = ["--rlhf_type", "ppo", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
             "--report_to", "none", "--logging_steps", "1", "--lora_dropout", "0", "--save_steps", "1",
             "--max_completion_length", "4", "--num_ppo_epochs", "2"]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``(exit status, stderr)`` of ``swiftkit ARGV`` run in this process."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def error_line(err: str) -> str:
    """The one ``swiftkit CMD: error: ...`` line of stderr (asserts there is exactly one, and no traceback)."""
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- the pickle payload ------------------------------------------------------------------------------


class Payload:
    """Unpickling this object calls ``open(marker, "w")``: the marker file appears iff a loader ran
    the pickle's code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


TORCH_SUFFIXES = (".bin", ".pt", ".pth")


def plant(path: Path, marker: Path) -> Path:
    """Replace ``path`` with a pickle payload: torch's zip format for torch files (.bin/.pt/.pth),
    a plain pickle otherwise (what a crafted file would hold to reach an unsafe loader)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in TORCH_SUFFIXES:
        torch.save({"state": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))
    return path


# -- trained runs (once per session, copied per test) -----------------------------------------------

_RUNS: dict[str, Path] = {}


def _trained(key: str, root: Path, build) -> Path:
    if key not in _RUNS:
        _RUNS[key] = build(root / key)
    return _RUNS[key]


def _only_run(out: Path) -> Path:
    runs = sorted(out.glob("v*-*"))
    assert len(runs) == 1, runs
    return runs[0]


def sft_run(model_dir: Path, root: Path, *extra: str) -> Path:
    """A finished 2-step ``swiftkit sft`` run (checkpoint-1 and checkpoint-2), LoRA unless ``extra``
    says otherwise; trained once per session for each ``extra``."""
    def build(folder: Path) -> Path:
        folder.mkdir(parents=True)
        data = write_jsonl(folder / "train.jsonl", ROWS * 2)
        argv = ["sft", "--model", str(model_dir), "--dataset", str(data), "--output_dir", str(folder / "out"),
                *SFT_FLAGS, "--max_steps", "2", *extra]
        assert main(argv) == 0
        return _only_run(folder / "out")

    return _trained("sft" + "".join(extra).replace("-", "_"), root, build)


def ppo_run(model_dir: Path, root: Path) -> Path:
    """A finished 2-step ``swiftkit rlhf --rlhf_type ppo`` run (reward model: a 2-step rm run)."""
    def build(folder: Path) -> Path:
        folder.mkdir(parents=True)
        pairs = write_jsonl(folder / "pairs.jsonl", PAIRS)
        prompts = write_jsonl(folder / "prompts.jsonl", PROMPTS)
        assert main(["rlhf", "--rlhf_type", "rm", "--model", str(model_dir), "--dataset", str(pairs),
                     "--output_dir", str(folder / "rm"), "--per_device_train_batch_size", "4",
                     "--report_to", "none", "--max_steps", "2"]) == 0
        assert main(["rlhf", "--model", str(model_dir), "--dataset", str(prompts), "--output_dir",
                     str(folder / "out"), "--reward_model", str(_only_run(folder / "rm")), *PPO_FLAGS,
                     "--max_steps", "2"]) == 0
        return _only_run(folder / "out")

    return _trained("ppo", root, build)


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a trained run (with its data files beside it) that a test may change."""
    shutil.copytree(run.parent.parent, dest)
    return dest / run.parent.name / run.name


def data_of(run: Path, name: str) -> Path:
    return run.parent.parent / name


def sft_resume_argv(target: Path, run: Path, max_steps: int = 3) -> list[str]:
    return ["sft", "--resume_from_checkpoint", str(target), "--dataset", str(data_of(run, "train.jsonl")),
            *SFT_FLAGS, "--max_steps", str(max_steps)]


def reward_of(ppo: Path) -> Path:
    """The rm run whose reward model a :func:`ppo_run` (or a copy of one) used."""
    return _only_run(ppo.parent.parent / "rm")


def ppo_resume_argv(target: Path, run: Path, max_steps: int = 3) -> list[str]:
    reward = reward_of(run)
    return ["rlhf", "--resume_from_checkpoint", str(target), "--dataset", str(data_of(run, "prompts.jsonl")),
            "--reward_model", str(reward), *PPO_FLAGS, "--max_steps", str(max_steps)]


# -- small filesystems --------------------------------------------------------------------------------


class Tmpfs:
    """A tmpfs of ``size`` mounted on a new folder under ``parent`` (unmounted by :meth:`close`)."""

    def __init__(self, parent: Path, size: str, *options: str):
        self.path = parent / f"mnt-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        opts = ",".join([f"size={size}", *options])
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(self.path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            self.path.rmdir()
            pytest.skip(f"cannot mount a {size} tmpfs here (`mount -t tmpfs` failed: {proc.stderr.strip()}); "
                        "this case needs a real full or read-only filesystem")

    def fill(self, leave: int = 0) -> None:
        """Write a filler file until at most ``leave`` bytes are free."""
        filler = self.path / f".filler-{uuid.uuid4().hex[:6]}"
        with filler.open("wb") as fh:
            try:
                while shutil.disk_usage(self.path).free > leave:
                    fh.write(b"\0" * min(65536, max(4096, shutil.disk_usage(self.path).free - leave)))
                    fh.flush()
            except OSError:
                pass

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()


def mount_tmpfs(request, parent: Path, size: str, *options: str) -> Tmpfs:
    fs = Tmpfs(parent, size, *options)
    request.addfinalizer(fs.close)
    return fs


def read_only_dir(request, parent: Path) -> Path:
    """A folder on a read-only filesystem (writes fail with EROFS, even for root)."""
    return mount_tmpfs(request, parent, "1m", "ro").path


def files_of(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def is_root() -> bool:
    return os.geteuid() == 0
