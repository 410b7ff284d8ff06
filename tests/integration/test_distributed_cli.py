"""`swiftkit sft` over several processes (NPROC_PER_NODE, NNODES): DDP on the CPU with gloo, through torchrun.

Each test starts the real console script, which starts torchrun, which starts the ranks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sft_cli import ROWS, read_jsonl, write_jsonl

EXE = Path(sys.executable).parent / "swiftkit"
pytestmark = pytest.mark.skipif(not EXE.exists(), reason="console script not installed in this environment")
# The losses of a 2-rank run and a 1-rank run with twice the accumulation differ only by the order
# in which float32 sums meet (measured ~1e-7 relative); a rank that trained on other rows would differ by >1e-3.
RTOL = 1e-5


def _sft(model, data, out, *extra, env=None, **popen):
    argv = [str(EXE), "sft", "--model", str(model), "--dataset", str(data), "--output_dir", str(out),
            "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--logging_steps", "1",
            "--lora_dropout", "0", "--report_to", "none", *extra]
    environ = {**os.environ, "SWIFTKIT_ALLOCATOR": "system", **(env or {})}
    for name in ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in (env or {}):
            environ.pop(name, None)
    if popen:
        return subprocess.Popen(argv, env=environ, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=600)


def _losses(run: Path) -> list[tuple[float, float, int]]:
    return [(r["loss"], r["grad_norm"], r["train_tokens"]) for r in read_jsonl(run / "logging.jsonl") if "loss" in r]


def _same(a, b):
    assert [t for *_, t in a] == [t for *_, t in b]  # the same rows, token for token
    for (loss_a, norm_a, _), (loss_b, norm_b, _) in zip(a, b):
        assert loss_a == pytest.approx(loss_b, rel=RTOL) and norm_a == pytest.approx(norm_b, rel=RTOL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def job(tiny_model_dir, tmp_path):
    return tiny_model_dir("llama", "chatml"), write_jsonl(tmp_path / "train.jsonl", ROWS * 8)


def test_two_ranks_train_as_one_rank_with_twice_the_accumulation(job, tmp_path):
    model, data = job
    two = _sft(model, data, tmp_path / "two", "--max_steps", "4", "--save_steps", "2", env={"NPROC_PER_NODE": "2"})
    assert two.returncode == 0, two.stderr[-3000:]
    one = _sft(model, data, tmp_path / "one", "--max_steps", "4", "--save_steps", "2",
               "--gradient_accumulation_steps", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    [run2], [run1] = list((tmp_path / "two").iterdir()), list((tmp_path / "one").iterdir())  # one run folder
    _same(_losses(run2), _losses(run1))
    manifest = json.loads((run2 / "manifest.json").read_text())
    assert manifest["distributed"] == {"world_size": 2, "nnodes": 1, "engine": "ddp"}
    assert json.loads((run1 / "manifest.json").read_text())["distributed"]["world_size"] == 1
    logs = [r for r in read_jsonl(run2 / "logging.jsonl") if "loss" in r]
    assert len(logs) == 4  # one line per step, from rank 0
    assert all(sum(r["ranks"]["train_tokens"]) == r["train_tokens"] and len(r["ranks"]["peak_rss_mb"]) == 2
               for r in logs)
    result = json.loads((run2 / "train_result.json").read_text())
    assert result["world_size"] == 2 and sum(result["rank_train_tokens"]) == result["train_tokens"]
    assert two.stderr.count("[swiftkit] run finished") == 1  # said once, by rank 0
    for step in (2, 4):  # checkpoints written once, loadable without swiftkit
        assert (run2 / f"checkpoint-{step}" / "adapter_model.safetensors").is_file()
        assert (run2 / f"checkpoint-{step}" / "args.json").is_file()

    # Resumed under the same world size, the run continues with the losses it would have had.
    again = _sft(model, data, tmp_path / "two", "--max_steps", "4", "--resume_from_checkpoint",
                 str(run2 / "checkpoint-2"), env={"NPROC_PER_NODE": "2"})
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = [r for r in read_jsonl(run2 / "logging.jsonl") if "loss" in r][4:]
    _same([(r["loss"], r["grad_norm"], 0) for r in resumed], [(r[0], r[1], 0) for r in _losses(run1)[2:]])

    # On another number of ranks it would not continue exactly: one line says so.
    other = _sft(model, data, tmp_path / "two", "--max_steps", "6", "--resume_from_checkpoint", str(run2 / "checkpoint-4"))
    assert other.returncode == 2
    assert other.stderr.strip().endswith("the run trained on 2 rank(s) and this one has 1; resume with NPROC_PER_NODE x "
                                         "NNODES = 2, or start a new run from its weights (--model for full weights, "
                                         "rlhf --adapters for LoRA)"), other.stderr[-2000:]


def test_two_nodes_on_this_machine(job, tmp_path):
    model, data = job
    port = str(_free_port())
    nodes = [_sft(model, data, tmp_path / "out", "--max_steps", "2",
                  env={"NNODES": "2", "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port},
                  popen=True) for rank in (0, 1)]
    results = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in results]
    [run] = list((tmp_path / "out").iterdir())
    assert json.loads((run / "manifest.json").read_text())["distributed"] == {"world_size": 2, "nnodes": 2,
                                                                             "engine": "ddp"}
    assert json.loads((run / "train_result.json").read_text())["global_step"] == 2


def _rank_pid(rank: int, deadline: float) -> int:
    """The pid of the training process with RANK=rank (a child of torchrun)."""
    while time.time() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"swiftkit" in cmdline and b"-m" in cmdline and f"RANK={rank}".encode() in environ:
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError(f"no rank {rank} process found")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_rank_that_dies_ends_the_run_with_one_clear_error(job, tmp_path):
    model, data = job
    out = tmp_path / "out"
    proc = _sft(model, data, out, "--max_steps", "100000", "--save_steps", "100000",
                env={"NPROC_PER_NODE": "2"}, popen=True)
    deadline = time.time() + 300
    while not list(out.glob("v*/logging.jsonl")):  # training has started
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.5)
    os.kill(_rank_pid(1, deadline), signal.SIGKILL)
    killed = time.time()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert time.time() - killed < 60
    assert "swiftkit sft: error: a rank of the distributed run failed" in err


def test_bad_launch_settings_are_one_line_and_no_run(job, tmp_path):
    model, data = job
    for env, message in (({"NPROC_PER_NODE": "two"}, "NPROC_PER_NODE='two' must be a whole number >= 1"),
                         ({"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "127.0.0.1"},
                          "NODE_RANK=2 must be below NNODES=2"),
                         ({"NNODES": "2"}, "NNODES=2: set MASTER_ADDR")):
        proc = _sft(model, data, tmp_path / "out", "--max_steps", "1", env=env)
        assert proc.returncode == 2
        assert proc.stderr.strip().startswith(f"swiftkit sft: error: {message}"), proc.stderr[-2000:]
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = _sft(model, data, tmp_path / "out", "--max_steps", "1", "--lora_rank", "-1", env={"NPROC_PER_NODE": "2"})
    assert proc.returncode == 2 and "torchrun" not in proc.stderr  # flags are checked once, before any rank starts
    assert not (tmp_path / "out").exists()


@pytest.fixture
def rlhf_job(tiny_model_dir, tmp_path):
    from test_rlhf_cli import pair_rows

    prompts = [{"query": f"Question number {i}: what next?", "solution": str(i)} for i in range(16)]
    return (tiny_model_dir("llama", "chatml"), write_jsonl(tmp_path / "pairs.jsonl", pair_rows() * 2),
            write_jsonl(tmp_path / "prompts.jsonl", prompts))


def _rlhf_run(model, data, out, *extra, env=None):
    argv = [str(EXE), "rlhf", "--model", str(model), "--dataset", str(data), "--output_dir", str(out),
            "--logging_steps", "1", "--lora_dropout", "0", "--report_to", "none", *extra]
    environ = {**os.environ, "SWIFTKIT_ALLOCATOR": "system", **(env or {})}
    return subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=600)


def test_dpo_on_two_ranks_trains_as_one_rank_with_twice_the_accumulation(rlhf_job, tmp_path):
    model, pairs, _ = rlhf_job
    flags = ("--rlhf_type", "dpo", "--per_device_train_batch_size", "2", "--learning_rate", "5e-3", "--max_steps", "3")
    two = _rlhf_run(model, pairs, tmp_path / "two", *flags, env={"NPROC_PER_NODE": "2"})
    assert two.returncode == 0, two.stderr[-3000:]
    one = _rlhf_run(model, pairs, tmp_path / "one", *flags, "--gradient_accumulation_steps", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    [run2], [run1] = list((tmp_path / "two").iterdir()), list((tmp_path / "one").iterdir())
    _same(_losses(run2), _losses(run1))
    assert _losses(run2)[-1][0] < _losses(run2)[0][0]  # it learned


def test_grpo_on_two_ranks(rlhf_job, tmp_path):
    model, _, prompts = rlhf_job
    proc = _rlhf_run(model, prompts, tmp_path / "out", "--rlhf_type", "grpo", "--reward_funcs", "length",
                     "--train_type", "full", "--max_steps", "2", "--per_device_train_batch_size", "4",
                     "--num_generations", "4", "--max_completion_length", "8", env={"NPROC_PER_NODE": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = list((tmp_path / "out").iterdir())
    logs = [r for r in read_jsonl(run / "logging.jsonl") if "reward" in r]
    assert [r["step"] for r in logs] == [1, 2] and all(len(r["ranks"]["peak_rss_mb"]) == 2 for r in logs)
    assert json.loads((run / "train_result.json").read_text())["world_size"] == 2
    assert (run / "checkpoint-2" / "model.safetensors").is_file()


def test_ppo_on_two_ranks_trains_as_one_rank_with_twice_the_accumulation(rlhf_job, tmp_path):
    """The value model's gradients are averaged like the policy's, and every rollout samples from a seed of
    its place in the global batch: two ranks sample, score and update exactly as one rank accumulating two."""
    model, _, prompts = rlhf_job
    flags = ("--rlhf_type", "ppo", "--reward_model", str(model), "--per_device_train_batch_size", "2",
             "--max_completion_length", "6", "--num_ppo_epochs", "2", "--max_steps", "4", "--save_steps", "1",
             "--learning_rate", "1e-3")
    two = _rlhf_run(model, prompts, tmp_path / "two", *flags, env={"NPROC_PER_NODE": "2"})
    assert two.returncode == 0, two.stderr[-3000:]
    one = _rlhf_run(model, prompts, tmp_path / "one", *flags, "--gradient_accumulation_steps", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    [run2], [run1] = list((tmp_path / "two").iterdir()), list((tmp_path / "one").iterdir())
    names = ("loss", "grad_norm", "objective/scores", "objective/kl", "loss/value", "policy/entropy")

    def stats(run):
        return [[r[n] for n in names] for r in read_jsonl(run / "logging.jsonl") if "loss" in r]

    assert len(stats(run2)) == 4
    for a, b in zip(stats(run2), stats(run1)):
        assert a == pytest.approx(b, rel=RTOL, abs=1e-7)
    # each rank keeps its own cached rollout; resumed mid-rollout (step 4 reuses step 3's), the run goes on exactly
    assert (run2 / "checkpoint-3" / "ppo_rollout.rank1.safetensors").is_file()
    again = _rlhf_run(model, prompts, tmp_path / "two", *flags, "--resume_from_checkpoint", str(run2 / "checkpoint-3"),
                      env={"NPROC_PER_NODE": "2"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert stats(run2)[-1] == pytest.approx(stats(run1)[-1], rel=RTOL, abs=1e-7)


def test_accelerate_launch_starts_the_ranks_too(job, tmp_path):
    model, data = job
    argv = [str(EXE.parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "-m", "swiftkit", "sft",
            "--model", str(model), "--dataset", str(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "2",
            "--per_device_train_batch_size", "2", "--logging_steps", "1", "--lora_dropout", "0", "--report_to", "none"]
    environ = {k: v for k, v in os.environ.items() if k not in ("NPROC_PER_NODE", "NNODES", "MASTER_PORT")}
    proc = subprocess.run(argv, env={**environ, "SWIFTKIT_ALLOCATOR": "system"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = list((tmp_path / "out").iterdir())  # one run folder for both ranks
    assert json.loads((run / "manifest.json").read_text())["distributed"]["world_size"] == 2
    logs = [r for r in read_jsonl(run / "logging.jsonl") if "loss" in r]
    assert len(logs) == 2 and all(len(r["ranks"]["train_tokens"]) == 2 for r in logs)
