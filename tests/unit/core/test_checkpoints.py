"""Which checkpoint a flag means (the last complete one, by one rule) and the checks of its files."""

from __future__ import annotations

import pytest

from swiftkit.core.checkpoints import CheckpointError, check_files, is_complete, pick_checkpoint


def _checkpoint(run, step, state=None):
    folder = run / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if state is not False:
        (folder / "trainer_state.json").write_text(state or f'{{"global_step": {step}}}')
    return folder


def test_complete_means_a_readable_trainer_state(tmp_path):
    assert is_complete(_checkpoint(tmp_path, 1))
    assert not is_complete(_checkpoint(tmp_path, 2, state=False))
    assert not is_complete(_checkpoint(tmp_path, 3, state='{"global_step": 3'))  # cut short
    assert not is_complete(_checkpoint(tmp_path, 4, state="[]"))



def test_check_files_reads_every_kind_and_skips_training_args(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.ones(3)}, tmp_path / "model.safetensors")
    torch.save({"w": torch.ones(3)}, tmp_path / "optimizer.pt")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "training_args.bin").write_bytes(b"any pickle at all")  # never read
    (tmp_path / "README.md").write_text("not checked")
    check_files(tmp_path, "--adapters")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"sub/config.json: cannot be read as JSON"):
        check_files(tmp_path, "--adapters")


def test_an_rng_state_with_numpy_arrays_passes(tmp_path):
    """transformers saves numpy's RNG state in rng_state.pth and loads it with an allowlist of numpy
    types; the check accepts exactly that."""
    import random

    import numpy as np
    import torch

    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()},
               tmp_path / "rng_state.pth")
    check_files(tmp_path, "--resume_from_checkpoint")
    (tmp_path / "rng_state.pth").rename(tmp_path / "scaler.pt")  # the allowlist is the RNG state's only
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        check_files(tmp_path, "--resume_from_checkpoint")


def test_pick_checkpoint_never_reads_an_unfinished_checkpoint(tmp_path):
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text('{"global_step": 1}')
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2')  # cut short
    assert pick_checkpoint(str(tmp_path), "--adapters") == tmp_path / "checkpoint-1"
    with pytest.raises(CheckpointError, match="incomplete checkpoint"):
        pick_checkpoint(str(tmp_path / "checkpoint-2"), "--adapters")


def test_resume_and_adapters_share_the_rule(tmp_path):
    from swiftkit.core.checkpoints import find_checkpoint, resolve_resume

    run = tmp_path / "out" / "v0-20260101-000000"
    _checkpoint(run, 2)
    _checkpoint(run, 4, state=False)
    for target in (run, tmp_path / "out"):  # a run folder, an --output_dir holding runs
        assert resolve_resume(str(target)) == find_checkpoint(str(target)) == run / "checkpoint-2"
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert find_checkpoint(str(model)) == model  # a model folder is itself for --adapters ...
    with pytest.raises(CheckpointError, match="holds no checkpoint-N directory"):
        resolve_resume(str(model))  # ... but resume needs a checkpoint
