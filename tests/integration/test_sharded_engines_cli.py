"""--deepspeed (ZeRO) and --fsdp (FSDP2) on two CPU ranks (gloo), through the real console script and torchrun.

A sharded run must train exactly as one process with twice the accumulation (the same rows, the same
global-batch loss), save checkpoints that plain transformers/peft load, and resume only on the engine it
was saved with. The first DeepSpeed run on a machine compiles DeepSpeed's shared-memory op (~1 min, cached
under ~/.cache/torch_extensions).
"""

from __future__ import annotations

import json

import pytest
import torch
from test_distributed_cli import RTOL, _losses, _rlhf_run, _same, _sft
from test_distributed_cli import rlhf_job as rlhf_job  # the fixture
from test_sft_cli import ROWS, write_jsonl

pytest.importorskip("deepspeed", reason="swiftkit[deepspeed] is part of the dev install")
STEPS = ("--max_steps", "4", "--save_steps", "2")


@pytest.fixture(scope="module")
def job(tiny_model_dir, tmp_path_factory):
    data = write_jsonl(tmp_path_factory.mktemp("sharded") / "train.jsonl", ROWS * 8)
    return tiny_model_dir("llama", "chatml"), data


@pytest.fixture(scope="module")
def one_rank(job, tmp_path_factory):
    """The reference: one process, twice the accumulation."""
    model, data = job
    out = tmp_path_factory.mktemp("one")
    proc = _sft(model, data, out, *STEPS, "--gradient_accumulation_steps", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = list(out.iterdir())
    return run


def _two_ranks(job, out, *extra):
    model, data = job
    proc = _sft(model, data, out, *extra, env={"NPROC_PER_NODE": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = list(out.iterdir())
    return run


def _adapter(checkpoint) -> dict[str, torch.Tensor]:
    """The LoRA weights plain peft loads from ``checkpoint`` onto the base model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = json.loads((checkpoint / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"])
    model = PeftModel.from_pretrained(base, str(checkpoint))
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def _same_weights(a: dict, b: dict):
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=RTOL, atol=1e-6, msg=key)


def test_zero3_trains_as_one_rank_resumes_and_refuses_another_engine(job, one_rank, tmp_path):
    run = _two_ranks(job, tmp_path / "z3", *STEPS, "--deepspeed", "zero3")
    _same(_losses(run), _losses(one_rank))
    manifest = json.loads((run / "manifest.json").read_text())["distributed"]
    assert manifest == {"world_size": 2, "nnodes": 1, "engine": "deepspeed", "config": "zero3", "zero_stage": 3}
    # the partitioned weights are gathered into one adapter file on save: peft loads it without swiftkit
    assert (run / "checkpoint-4" / "global_step4").is_dir()
    _same_weights(_adapter(run / "checkpoint-4"), _adapter(one_rank / "checkpoint-4"))

    before = _losses(run)
    model, data = job
    resumed = _sft(model, data, tmp_path / "unused", *STEPS, "--deepspeed", "zero3",
                   "--resume_from_checkpoint", str(run / "checkpoint-2"), env={"NPROC_PER_NODE": "2"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _losses(run)  # the resumed run logs into the same run folder (its token count starts again)
    assert len(after) == len(before) + 2
    _same([(loss, norm, 0) for loss, norm, _ in after[-2:]], [(loss, norm, 0) for loss, norm, _ in before[2:]])

    other = _sft(model, data, tmp_path / "other", *STEPS, "--deepspeed", "zero2",
                 "--resume_from_checkpoint", str(run / "checkpoint-2"), env={"NPROC_PER_NODE": "2"})
    assert other.returncode != 0
    assert "the run trained with DeepSpeed ZeRO-3 and this one asks for DeepSpeed ZeRO-2" in other.stderr


def test_zero2_offload_trains_as_one_rank(job, one_rank, tmp_path):
    run = _two_ranks(job, tmp_path / "z2", *STEPS, "--deepspeed", "zero2_offload")
    _same(_losses(run), _losses(one_rank))
    _same_weights(_adapter(run / "checkpoint-4"), _adapter(one_rank / "checkpoint-4"))


def test_fsdp2_trains_as_one_rank_and_saves_whole_checkpoints(job, one_rank, tmp_path):
    run = _two_ranks(job, tmp_path / "fsdp", *STEPS, "--fsdp", "fsdp2")
    _same(_losses(run), _losses(one_rank))
    assert json.loads((run / "manifest.json").read_text())["distributed"]["engine"] == "fsdp2"
    _same_weights(_adapter(run / "checkpoint-4"), _adapter(one_rank / "checkpoint-4"))


def test_fsdp2_full_weights_load_in_plain_transformers(job, tmp_path):
    from transformers import AutoModelForCausalLM

    model, _ = job
    run = _two_ranks(job, tmp_path / "full", "--max_steps", "2", "--train_type", "full", "--fsdp", "fsdp2")
    trained = AutoModelForCausalLM.from_pretrained(run / "checkpoint-2").state_dict()
    base = AutoModelForCausalLM.from_pretrained(model).state_dict()
    assert trained.keys() == base.keys()
    assert all(trained[k].shape == base[k].shape for k in base)  # whole weights, not one rank's shard
    assert any(not torch.equal(trained[k], base[k]) for k in base)  # and trained


def test_dpo_under_zero3_trains_as_one_rank(rlhf_job, tmp_path):
    model, pairs, _ = rlhf_job
    flags = ("--rlhf_type", "dpo", "--per_device_train_batch_size", "2", "--learning_rate", "5e-3", "--max_steps", "3")
    two = _rlhf_run(model, pairs, tmp_path / "two", *flags, "--deepspeed", "zero3", env={"NPROC_PER_NODE": "2"})
    assert two.returncode == 0, two.stderr[-3000:]
    one = _rlhf_run(model, pairs, tmp_path / "one", *flags, "--gradient_accumulation_steps", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    [run2], [run1] = list((tmp_path / "two").iterdir()), list((tmp_path / "one").iterdir())
    _same(_losses(run2), _losses(run1))


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="Ulysses sequence parallelism over 2 ranks needs 2 CUDA GPUs")
def test_ulysses_sequence_parallelism_trains_as_one_rank(job, tmp_path):
    """Two GPUs, one sequence-parallel group: each sequence split over both, the same rows as one GPU."""
    model, data = job
    one = _sft(model, data, tmp_path / "one", "--max_steps", "2", "--deepspeed", "zero2")
    assert one.returncode == 0, one.stderr[-3000:]
    two = _two_ranks(job, tmp_path / "sp", "--max_steps", "2", "--deepspeed", "zero2", "--sequence_parallel_size", "2")
    [run1] = list((tmp_path / "one").iterdir())
    for (loss_a, _, _), (loss_b, _, _) in zip(_losses(two), _losses(run1)):
        assert loss_a == pytest.approx(loss_b, rel=1e-3)
