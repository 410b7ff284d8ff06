"""Jobs run as real `swiftkit` subprocesses on a tiny model: finish, fail, stop and resume, read back by a new manager."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from swiftkit.core.checkpoints import is_complete
from swiftkit.webui import jobs
from swiftkit.webui.jobs import JobManager

ROWS = [
    {"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi, how can I help?"}]},
    {"query": "Write a poem about the sea.", "response": "The sea and the sky."},
    {"instruction": "Add numbers", "input": "1 2", "output": "3"},
]
FAST = {"report_to": "none", "logging_steps": 1, "per_device_train_batch_size": 2, "learning_rate": 1e-3}
LONG_STEPS = 100_000  # runs until stopped


@pytest.fixture(scope="module")
def workspace(tiny_model_dir, tmp_path_factory):
    """A work folder with a tiny model and data, a job manager, and two jobs started at once: a training
    run that goes on until it is stopped, and one with a misspelt flag. Every job still running at the
    end is killed."""
    work = tmp_path_factory.mktemp("webui-jobs")
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS * 4))
    model = str(tiny_model_dir("llama", "chatml"))
    manager = JobManager(work / "state", work)
    base = {"model": model, "dataset": "train.jsonl", **FAST}
    long = manager.start("sft", {**base, "output_dir": "out", "max_steps": LONG_STEPS, "save_steps": LONG_STEPS},
                         title="long")
    bad = manager.start("sft", {**base, "max_steps": 1, "learning_rat": 0.1})
    yield {"work": work, "manager": manager, "base": base, "long": long.id, "bad": bad.id}
    for job in manager.list():
        if job.running:
            os.killpg(job.pid, signal.SIGKILL)


def test_a_bad_flag_fails_with_the_error_in_the_log(workspace):
    manager = workspace["manager"]
    job = manager.wait(workspace["bad"], 120)
    assert (job.status, job.exit_code, job.run_dir) == ("failed", 2, None)
    assert "swiftkit sft: error: unrecognized argument '--learning_rat'" in manager.log_tail(job.id)


def test_stop_leaves_a_checkpoint_that_a_resume_job_runs_to_the_end(workspace):
    manager, work = workspace["manager"], workspace["work"]
    job_id = workspace["long"]
    deadline = time.monotonic() + 180
    job = manager.get(job_id)
    while not (job.run_dir and jobs.loss_points(job.run_dir)):  # the run folder is found while it trains
        assert job.running and time.monotonic() < deadline, manager.log_tail(job_id)
        time.sleep(0.2)
        job = manager.get(job_id)
    assert job.title == "long" and job.output_dir == work / "out"
    assert job.run_dir.parent == job.output_dir and job.run_dir.name.startswith("v0-")
    assert job.argv[:2] == ["swiftkit", "sft"] and "--callbacks graceful_exit" in job.command_line
    job = manager.stop(job_id, timeout=120)
    assert (job.status, job.exit_code) == ("stopped", 0), manager.log_tail(job_id)
    assert "graceful_exit: stopped by SIGTERM" in manager.log_tail(job_id)
    run = jobs.run_info(job.run_dir)
    assert run.last_checkpoint is not None and is_complete(run.last_checkpoint)
    assert run.steps_done == int(run.last_checkpoint.name.split("-")[1]) < LONG_STEPS
    assert (run.command, run.model, run.train_type) == ("sft", workspace["base"]["model"], "lora")

    values = jobs.resume_values(run)
    assert values["resume_from_checkpoint"] == str(run.last_checkpoint)
    assert values["dataset"] == ["train.jsonl"] and values["max_steps"] == LONG_STEPS
    resumed = manager.start("sft", {**values, "max_steps": run.steps_done + 2}, title="resumed")
    resumed = manager.wait(resumed.id, 180)
    assert (resumed.status, resumed.exit_code, resumed.note) == ("finished", 0, ""), manager.log_tail(resumed.id)
    assert resumed.run_dir == job.run_dir  # the same run goes on
    assert "[swiftkit] run finished" in manager.log_tail(resumed.id, 5)
    points = jobs.loss_points(job.run_dir)
    steps = [step for step, _ in points]
    assert steps == sorted(set(steps)) and steps[-3:] == [run.steps_done, run.steps_done + 1, run.steps_done + 2]
    assert all(loss > 0 for _, loss in points)
    [after] = jobs.runs([job.output_dir])
    assert (after.run_dir, after.steps_done, after.finished) == (job.run_dir, run.steps_done + 2, True)
    assert after.last_checkpoint == job.run_dir / f"checkpoint-{run.steps_done + 2}" and after.loss == points[-1][1]


def test_a_job_stopped_before_training_ends_stopped(workspace):
    manager = workspace["manager"]
    job = manager.start("sft", {**workspace["base"], "output_dir": "early", "max_steps": 1})
    job = manager.stop(job.id, timeout=60)  # before the CLI has even loaded: SIGTERM ends it at once
    assert job.status == "stopped" and job.exit_code != 0
    assert not (workspace["work"] / "early").exists() or not list((workspace["work"] / "early").iterdir())


def test_a_new_manager_reads_the_jobs_back(workspace):
    manager = workspace["manager"]
    for job in manager.list():
        manager.wait(job.id, 180)
    before = {j.id: (j.status, j.exit_code, j.run_dir, j.title, j.argv) for j in manager.list()}
    assert before[workspace["bad"]][0] == "failed"
    fresh = JobManager(workspace["work"] / "state")
    listed = fresh.list()
    assert {j.id: (j.status, j.exit_code, j.run_dir, j.title, j.argv) for j in listed} == before
    assert [j.started for j in listed] == sorted((j.started for j in listed), reverse=True)
    assert fresh.log_tail(workspace["long"], 3) == manager.log_tail(workspace["long"], 3)


def test_a_job_that_outlives_the_timeout_is_killed_with_its_process_group(workspace):
    manager = workspace["manager"]
    job = manager.start("sft", {**workspace["base"], "output_dir": "killed-on-timeout", "max_steps": 1})
    job = manager.stop(job.id, timeout=0)
    assert job.status == "stopped" and job.exit_code is not None and "killed" in job.note
    with pytest.raises(ProcessLookupError):
        os.killpg(job.pid, 0)  # nothing of the job is left


def test_a_job_whose_processes_died_unrecorded_is_failed(workspace):
    manager = workspace["manager"]
    job = manager.start("sft", {**workspace["base"], "output_dir": "killed", "max_steps": 1})
    os.killpg(job.pid, signal.SIGKILL)  # the monitor and the CLI, as a machine crash would
    deadline = time.monotonic() + 30
    while manager.get(job.id).running:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    job = JobManager(workspace["work"] / "state").get(job.id)
    assert (job.status, job.exit_code) == ("failed", None)
    assert "without recording an exit status" in job.note


def test_log_tail_keeps_the_last_state_of_progress_bars(tmp_path):
    log = tmp_path / "log.txt"
    log.write_bytes(b"loading\n 10%|#  | 1/10\r 50%|#####  | 5/10\r100%|##########| 10/10\ndone\n")
    assert jobs.tail(log, 2) == "100%|##########| 10/10\ndone"
    assert jobs.tail(log, 10).splitlines()[0] == "loading"
    assert jobs.tail(tmp_path / "missing.txt") == ""


def test_loss_points_read_training_loss_only(tmp_path):
    records = [{"step": 1, "loss": 2.5, "learning_rate": 1e-4}, {"step": 2, "loss": 2.0},
               {"step": 2, "eval_loss": 1.9}, {"step": 3, "loss": float("nan")}, {"step": 2, "loss": 2.1},
               {"step": 4, "train_loss": 2.2, "train_runtime": 1.0}, {"step": 4, "loss": 1.5}]
    text = "".join(json.dumps(r) + "\n" for r in records) + '{"step": 5, "lo'  # a line still being written
    (tmp_path / "logging.jsonl").write_text(text)
    assert jobs.loss_points(tmp_path) == [(1, 2.5), (2, 2.1), (4, 1.5)]
    assert jobs.loss_points(tmp_path / "nowhere") == []


def test_runs_lists_training_run_folders_only(tmp_path):
    out = tmp_path / "out"
    for name, command in (("v0-20260101-000000", "sft"), ("v1-20260101-000100", "rlhf"),
                          ("v2-20260101-000200", "export")):
        (out / name).mkdir(parents=True)
        (out / name / "args.json").write_text(json.dumps({"command": command, "model": "m", "train_type": "lora",
                                                          "flags_given": ["model", "dataset", "max_steps"],
                                                          "dataset": ["d.jsonl"], "max_steps": 10,
                                                          "learning_rate": 1e-4}))
    (out / "notes").mkdir()
    (out / "v3-20260101-000300").mkdir()  # a run folder removed before it started has no args.json
    found = jobs.runs([out, tmp_path / "missing"])
    assert sorted(r.run_dir.name for r in found) == ["v0-20260101-000000", "v1-20260101-000100"]
    run = next(r for r in found if r.command == "sft")
    assert (run.steps_done, run.last_checkpoint, run.finished, run.loss, run.max_steps) == (0, None, False, None, 10)
    assert jobs.resume_values(run) == {"model": "m", "dataset": ["d.jsonl"], "max_steps": 10,
                                       "resume_from_checkpoint": str(run.run_dir)}
    assert [r.run_dir for r in jobs.runs([run.run_dir])] == [run.run_dir]  # a run folder given itself
    with pytest.raises(ValueError, match="not a training run"):
        jobs.resume_values(Path(out / "v2-20260101-000200"))


def test_job_values_add_the_stop_callback_to_training_only():
    assert jobs.job_values("sft", {"model": "m", "callbacks": "perf_log"})["callbacks"] == ["perf_log", "graceful_exit"]
    assert jobs.job_values("sft", {"callbacks": ["graceful_exit"]})["callbacks"] == ["graceful_exit"]
    assert "callbacks" not in jobs.job_values("sft", {"dry_run": True})
    assert "callbacks" not in jobs.job_values("infer", {"model": "m"})
