"""Tests of the focal loss and of the plugin's hook and entry point (run from this distribution's root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch
import torch.nn.functional as F
from swiftkit_focal_loss import plugin
from swiftkit_focal_loss.loss import focal_loss

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 11


def batch(seed: int = 0, b: int = 3, t: int = 7):
    """Random logits and labels with some -100 (a prompt, padding) in each row."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, VOCAB, generator=g) * 3
    labels = torch.randint(0, VOCAB, (b, t), generator=g)
    labels[:, :2] = -100
    labels[0, -2:] = -100
    return {"logits": logits}, labels


def reference_ce(outputs, labels, reduction="mean"):
    logits = outputs["logits"][:, :-1].reshape(-1, VOCAB)
    return F.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=-100, reduction=reduction)


def test_gamma_zero_is_cross_entropy_mean():
    outputs, labels = batch()
    assert torch.allclose(focal_loss(outputs, labels, gamma=0.0), reference_ce(outputs, labels))


@pytest.mark.parametrize("num_items", [5, torch.tensor(40)])
def test_gamma_zero_divides_sum_by_num_items_in_batch(num_items):
    outputs, labels = batch()
    expected = reference_ce(outputs, labels, reduction="sum") / num_items
    assert torch.allclose(focal_loss(outputs, labels, num_items, gamma=0.0), expected)


def test_focal_is_strictly_below_cross_entropy():
    for seed in range(5):
        outputs, labels = batch(seed)
        ce = reference_ce(outputs, labels)
        fl = focal_loss(outputs, labels)
        assert 0 < fl < ce
        assert focal_loss(outputs, labels, gamma=1.0) > fl  # a larger gamma discounts more


def test_ignored_labels_do_not_count():
    outputs, labels = batch()
    changed = {"logits": outputs["logits"].clone()}
    # Logits that predict an ignored target (label -100 one step ahead) may be anything.
    ignored = (labels[:, 1:] == -100).nonzero()
    for row, pos in ignored.tolist():
        changed["logits"][row, pos] = torch.randn(VOCAB) * 10
    assert ignored.numel() > 0
    assert torch.equal(focal_loss(outputs, labels), focal_loss(changed, labels))
    # No labelled token at all: zero, not NaN.
    assert focal_loss(outputs, torch.full_like(labels, -100)).item() == 0.0


def test_packed_row_equals_padded_batch():
    """A padding-free batch (one row, -100 at each sequence start) gives the padded batch's loss."""
    outputs, labels = batch(b=2, t=6)
    labels[:, 0] = -100  # a sequence's first token has no prediction, as the collators mark it
    packed_logits = outputs["logits"].reshape(1, -1, VOCAB)
    packed_labels = labels.reshape(1, -1)
    padded = focal_loss(outputs, labels, num_items_in_batch=9)
    packed = focal_loss({"logits": packed_logits}, packed_labels, num_items_in_batch=9)
    assert torch.allclose(padded, packed)


def test_gradient_flows_to_logits():
    outputs, labels = batch()
    logits = outputs["logits"].requires_grad_()
    focal_loss({"logits": logits}, labels).backward()
    assert logits.grad.abs().sum() > 0


def test_hook_answers_only_for_focal():
    assert plugin.swiftkit_get_loss(name="focal", config=None) is focal_loss
    for other in ("ce", "Focal", "label_smoothed", ""):
        assert plugin.swiftkit_get_loss(name=other, config=None) is None


def test_hook_is_valid_for_the_swiftkit_plugin_host():
    from swiftkit.core.choices import choice_names, choose
    from swiftkit.core.plugins import PluginHost

    host = PluginHost.build(entry_points=False)
    host.register(plugin, "focal_loss")  # checks every hook name and signature against the hookspecs
    assert choose(host, "loss", "focal", config=None) is focal_loss
    assert choice_names(host, "loss") == ["focal"]
    assert choice_names(host, "callback") == []


def test_plugin_module_does_not_import_torch():
    code = "import sys, swiftkit_focal_loss.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_entry_point_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "swiftkit-focal-loss"
    assert meta["project"]["entry-points"]["swiftkit"] == {"focal_loss": "swiftkit_focal_loss.plugin"}
    assert meta["tool"]["setuptools"]["packages"] == ["swiftkit_focal_loss"]
    assert {"swiftkit", "torch"} <= set(meta["project"]["dependencies"])
