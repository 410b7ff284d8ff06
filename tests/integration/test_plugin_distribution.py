"""A third-party plugin distribution (plugins/swiftkit-focal-loss) installed with pip is picked up.

The distribution is pip-installed into the running interpreter's environment for this module and
uninstalled afterwards. swiftkit runs in subprocesses, because entry points are read per process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from distributions import build_copy, install_offline, pip, write_train_file

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "plugins" / "swiftkit-focal-loss"
DIST_NAME = "swiftkit-focal-loss"
class PluginDistribution:
    """The plugin's source copy and whether it is installed right now."""

    def __init__(self, src: Path):
        self.src = src
        self.installed = False

    def install(self) -> None:
        if not self.installed:
            install_offline(self.src)
            self.installed = True

    def uninstall(self) -> None:
        pip("uninstall", "-y", DIST_NAME)
        self.installed = False


@pytest.fixture(scope="module")
def focal_dist(tmp_path_factory):
    # Build from a copy, so the build leaves no build/ or *.egg-info in the source tree.
    dist = PluginDistribution(build_copy(PLUGIN_SRC, tmp_path_factory.mktemp("dist")))
    try:
        dist.install()
        yield dist
    finally:
        dist.uninstall()


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_train_file(tmp_path_factory.mktemp("data") / "train.jsonl")


def swiftkit_sft(model_dir, data_file, out: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "swiftkit.cli.main", "sft", "--model", str(model_dir),
            "--dataset", str(data_file), "--output_dir", str(out), "--per_device_train_batch_size", "4",
            "--learning_rate", "1e-3", "--report_to", "none", "--logging_steps", "1", "--max_steps", "1",
            "--seed", "7", *extra]
    return subprocess.run(argv, capture_output=True, text=True, cwd=out.parent, timeout=300)


def first_step_loss(out: Path) -> float:
    (run,) = sorted(out.glob("v*-*"))
    logs = [json.loads(line) for line in (run / "logging.jsonl").read_text().splitlines() if line.strip()]
    return next(r["loss"] for r in logs if "loss" in r and r["step"] == 1)


def test_installed_entry_point_is_listed(focal_dist, tmp_path):
    focal_dist.install()
    code = ("from importlib.metadata import entry_points; "
            "print(sorted((e.name, e.value) for e in entry_points(group='swiftkit')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "('focal_loss', 'swiftkit_focal_loss.plugin')" in proc.stdout


def test_installed_plugin_loss_is_used_without_plugins_flag(focal_dist, tiny_model_dir, data_file, tmp_path):
    focal_dist.install()
    model_dir = tiny_model_dir("llama", "chatml")
    focal = swiftkit_sft(model_dir, data_file, tmp_path / "focal", "--loss_type", "focal")
    assert focal.returncode == 0, focal.stderr[-3000:]
    default = swiftkit_sft(model_dir, data_file, tmp_path / "default")
    assert default.returncode == 0, default.stderr[-3000:]
    typo = swiftkit_sft(model_dir, data_file, tmp_path / "typo", "--loss_type", "focl")
    assert typo.returncode == 2 and "did you mean 'focal'" in typo.stderr
    assert typo.stderr.rstrip().endswith("valid --loss_type values: cross_entropy, focal")
    focal_loss, ce_loss = first_step_loss(tmp_path / "focal"), first_step_loss(tmp_path / "default")
    # Same weights and batch: the focal weights (1 - p_t)**2 < 1 make the loss strictly lower; on a
    # random model p_t is small, so only slightly lower.
    assert 0.95 * ce_loss < focal_loss < ce_loss


def test_uninstalled_plugin_loss_is_an_unknown_loss_type(focal_dist, tiny_model_dir, data_file, tmp_path):
    focal_dist.uninstall()
    proc = swiftkit_sft(tiny_model_dir("llama", "chatml"), data_file, tmp_path / "out", "--loss_type", "focal")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "unknown --loss_type 'focal'" in proc.stderr
    assert proc.stderr.rstrip().endswith("valid --loss_type values: cross_entropy")  # focal is gone
    assert "Traceback" not in proc.stderr
