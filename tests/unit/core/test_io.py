"""Run directories, resume resolution and atomic JSON records."""

import json

import pytest

from swiftkit.core.checkpoints import CheckpointError, checkpoints, resolve_resume
from swiftkit.core.io import new_run_dir, write_json


def test_run_dirs_are_numbered(tmp_path):
    a = new_run_dir(tmp_path)
    b = new_run_dir(tmp_path)
    (tmp_path / "v7-20200101-000000").mkdir()
    c = new_run_dir(tmp_path)
    assert a.name.startswith("v0-") and b.name.startswith("v1-") and c.name.startswith("v8-")


def test_checkpoints_sorted_by_step(tmp_path):
    for step in (10, 2, 100):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-x").mkdir()
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10", "checkpoint-100"]


def test_resume_picks_last_complete_checkpoint(tmp_path):
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    assert resolve_resume(str(tmp_path)).name == "checkpoint-4"
    assert resolve_resume(str(tmp_path / "checkpoint-2")).name == "checkpoint-2"
    (tmp_path / "checkpoint-6").mkdir()  # a save cut short by a crash
    assert resolve_resume(str(tmp_path)).name == "checkpoint-4"


def test_resume_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_resume(str(tmp_path / "missing"))
    with pytest.raises(CheckpointError, match="no checkpoint-N"):
        resolve_resume(str(tmp_path))
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(CheckpointError, match="incomplete"):
        resolve_resume(str(tmp_path / "checkpoint-3"))
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        resolve_resume(str(tmp_path))


def test_write_json_leaves_no_temp_file(tmp_path):
    target = tmp_path / "args.json"
    write_json(target, {"a": 1, "b": "小星"})
    assert json.loads(target.read_text()) == {"a": 1, "b": "小星"}
    assert [p.name for p in tmp_path.iterdir()] == ["args.json"]


def test_an_output_dir_means_the_last_complete_checkpoint_of_its_newest_run(tmp_path):
    from swiftkit.core.checkpoints import find_checkpoint

    for run, steps in (("v0-20260101-000000", (5,)), ("v1-20260102-000000", (2, 4)), ("v2-20260103-000000", ()),
                       ("v3-20260104-000000", ())):
        for step in steps:
            (tmp_path / run / f"checkpoint-{step}").mkdir(parents=True)
            (tmp_path / run / f"checkpoint-{step}" / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
        (tmp_path / run).mkdir(exist_ok=True)
    (tmp_path / "v3-20260104-000000" / "checkpoint-1").mkdir()  # a save cut short
    # v2 has no checkpoint (a run that failed early), v3 no complete one: the newest run with one is v1
    assert find_checkpoint(str(tmp_path)) == tmp_path / "v1-20260102-000000" / "checkpoint-4"
    assert find_checkpoint(str(tmp_path / "v0-20260101-000000")) == tmp_path / "v0-20260101-000000" / "checkpoint-5"
    with pytest.raises(CheckpointError, match="nor any checkpoint-N directory or v"):
        find_checkpoint(str(tmp_path / "v2-20260103-000000"))
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        find_checkpoint(str(tmp_path / "v3-20260104-000000"))


def test_an_output_dir_that_is_a_file_or_under_one_is_an_output_error(tmp_path):
    from swiftkit.core.io import OutputError

    (tmp_path / "notes").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        new_run_dir(tmp_path / "notes")
    with pytest.raises(OutputError, match="a part of the path is a file"):
        new_run_dir(tmp_path / "notes" / "out")


def test_write_json_in_the_way_of_a_folder_leaves_no_temp_file(tmp_path):
    from swiftkit.core.io import OutputError

    (tmp_path / "args.json").mkdir()
    with pytest.raises(OutputError, match="a folder is in the way of a file"):
        write_json(tmp_path / "args.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["args.json"]


def test_write_problem_sees_through_wrapping_and_ignores_other_errors(tmp_path):
    import errno

    from swiftkit.core.io import write_problem

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/x/optimizer.pt")
        except OSError as inner:
            raise RuntimeError("saving the checkpoint failed") from inner
    except RuntimeError as outer:
        assert write_problem(outer).startswith("the disk is full")
    # safetensors spells it in its own error's message
    assert "read-only" in write_problem(Exception("Error while serializing: I/O error: Read-only file system (os error 30)"))
    assert write_problem(ValueError("a bug"), tmp_path) is None  # plenty of space here: not a full disk
    assert write_problem(OSError(errno.ENOENT, "No such file or directory", "x")) is None
