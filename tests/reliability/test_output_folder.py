"""An output folder that cannot be written (an existing file, a path under a file, a read-only
filesystem, a full disk): one line naming the folder and what to do, exit status 2, nothing half-made
left behind. Read-only and full filesystems are real small tmpfs mounts (root ignores permission
bits, so chmod would prove nothing); the tests skip where mounting is not allowed."""

from __future__ import annotations

import pytest
from conftest_checkpoints import (
    ROWS,
    SFT_FLAGS,
    copy_run,
    error_line,
    mount_tmpfs,
    read_only_dir,
    run_cli,
    sft_run,
    write_jsonl,
)


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", ROWS * 2)


def sft(model_dir, data, out, capsys):
    return run_cli(["sft", "--model", model_dir, "--dataset", data, "--output_dir", out, *SFT_FLAGS,
                    "--max_steps", "1"], capsys)


def test_an_output_dir_that_is_a_file(model_dir, data, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("my notes")
    rc, err = sft(model_dir, data, out, capsys)
    assert rc == 2
    line = error_line(err)
    assert f"--output_dir {str(out)!r} is a file, not a folder" in line
    assert out.read_text() == "my notes"


def test_an_output_dir_under_a_file(model_dir, data, tmp_path, capsys):
    (tmp_path / "notes").write_text("my notes")
    out = tmp_path / "notes" / "out"
    rc, err = sft(model_dir, data, out, capsys)
    assert rc == 2
    line = error_line(err)
    assert str(out) in line and "a part of the path is a file, not a folder" in line


def test_a_read_only_output_dir(model_dir, data, tmp_path, request, capsys):
    out = read_only_dir(request, tmp_path) / "out"
    rc, err = sft(model_dir, data, out, capsys)
    assert rc == 2
    line = error_line(err)
    assert str(out) in line and "the filesystem is read-only" in line


def test_a_full_disk_before_the_run_starts(model_dir, data, tmp_path, request, capsys):
    disk = mount_tmpfs(request, tmp_path, "1m")
    disk.fill()
    out = disk.path / "out"
    rc, err = sft(model_dir, data, out, capsys)
    assert rc == 2
    line = error_line(err)
    assert str(out) in line and "the disk is full" in line
    assert not out.exists()  # the run folder and the --output_dir it created are gone again


@pytest.fixture
def checkpoint(model_dir, tmp_path_factory, tmp_path):
    return copy_run(sft_run(model_dir, tmp_path_factory.getbasetemp() / "runs-output"), tmp_path / "copy") / \
        "checkpoint-2"


def test_export_to_a_read_only_folder(checkpoint, tmp_path, request, capsys):
    out = read_only_dir(request, tmp_path) / "exported"
    rc, err = run_cli(["export", "--adapters", checkpoint, "--output_dir", out], capsys)
    assert rc == 2
    line = error_line(err)
    assert str(out) in line and "the filesystem is read-only" in line


def test_export_under_a_file(checkpoint, tmp_path, capsys):
    (tmp_path / "notes").write_text("my notes")
    out = tmp_path / "notes" / "exported"
    rc, err = run_cli(["export", "--adapters", checkpoint, "--output_dir", out], capsys)
    assert rc == 2
    line = error_line(err)
    assert str(tmp_path / "notes") in line and "a file is in the way of a folder" in line


def test_export_to_a_full_disk(checkpoint, tmp_path, request, capsys):
    disk = mount_tmpfs(request, tmp_path, "1m")
    disk.fill(leave=64 * 1024)  # the folder is made; the weights do not fit
    out = disk.path / "exported"
    rc, err = run_cli(["export", "--adapters", checkpoint, "--output_dir", out, "--merge_lora", "true"], capsys)
    assert rc == 2
    line = error_line(err)
    assert str(out) in line and "the disk is full" in line
    assert not out.exists() and [p.name for p in disk.path.iterdir() if not p.name.startswith(".filler")] == []


def test_infer_results_to_a_read_only_folder(checkpoint, tmp_path, request, capsys):
    prompts = write_jsonl(tmp_path / "eval.jsonl", [{"query": "Hello!"}])
    result = read_only_dir(request, tmp_path) / "results" / "out.jsonl"
    rc, err = run_cli(["infer", "--adapters", checkpoint, "--val_dataset", prompts, "--max_new_tokens", "2",
                       "--result_path", result], capsys)
    assert rc == 2
    line = error_line(err)
    assert str(result.parent) in line and "the filesystem is read-only" in line


def test_torchs_opaque_full_disk_error_is_recognised(tmp_path, request):
    """torch.save reports a full disk as a failed stream, without an errno; the free space left tells."""
    import torch

    from swiftkit.core.io import write_problem

    disk = mount_tmpfs(request, tmp_path, "256k")
    with pytest.raises(Exception) as failed:
        torch.save({"w": torch.zeros(200_000)}, disk.path / "optimizer.pt")
    assert write_problem(failed.value, disk.path).startswith("the disk is full")
    assert write_problem(failed.value, tmp_path) is None  # the same error where space is left: not ours to name
