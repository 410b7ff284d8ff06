"""--deepspeed / --fsdp: presets by name or JSON files, checked at parse time; what an engine refuses; the
DeepSpeed checkpoint objects the resume check lets through and the pickles it still refuses."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from swiftkit.cli.args import config_and_host
from swiftkit.commands import COMMANDS
from swiftkit.config.engines import DEEPSPEED_PRESETS, FSDP_PRESETS, engine_config, preset_path, shards_parameters
from swiftkit.core import distributed
from swiftkit.core.checkpoints import CheckpointError, check_files
from swiftkit.core.errors import ConfigError
from swiftkit.recipes.parts import check_engine, engine_arguments

BASE = ["--model", "m", "--dataset", "a.jsonl"]


def parse(*argv, command="sft"):
    return config_and_host(COMMANDS[command], [*BASE, *argv])[0]


@pytest.mark.parametrize("name", DEEPSPEED_PRESETS)
def test_every_deepspeed_preset_is_a_zero_config_transformers_fills_in(name):
    settings = engine_config(name, "--deepspeed")
    stage = settings["zero_optimization"]["stage"]
    assert str(stage) == name[4]  # zero2_offload -> 2
    assert settings["gradient_accumulation_steps"] == settings["train_micro_batch_size_per_gpu"] == "auto"
    assert ("offload_optimizer" in settings["zero_optimization"]) == name.endswith("_offload")
    if stage == 3:  # the weights are gathered into whole files on save
        assert settings["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize("name", FSDP_PRESETS)
def test_every_fsdp_preset_is_fsdp2_saving_whole_weights(name):
    settings = engine_config(name, "--fsdp")
    assert settings["version"] == 2 and settings["state_dict_type"] == "FULL_STATE_DICT"
    assert engine_arguments(parse("--fsdp", name).training) == {"fsdp": True, "fsdp_config": settings}


def test_a_json_file_is_taken_and_recorded_by_its_path(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": "auto"}))
    cfg = parse("--deepspeed", str(path))
    assert cfg.training.deepspeed == str(path) and shards_parameters(cfg.training)
    assert engine_arguments(cfg.training)["deepspeed"]["zero_optimization"] == {"stage": 3}
    assert not shards_parameters(parse("--deepspeed", "zero2").training)
    assert shards_parameters(parse("--fsdp", "fsdp2").training)
    assert engine_arguments(parse().training) == {}


@pytest.mark.parametrize(("argv", "message"), [
    (("--deepspeed", "zero4"), "--deepspeed zero4: not a preset (zero0, zero1, zero2, zero3, zero2_offload, "
                               "zero3_offload) or a .json file (did you mean 'zero3'?)"),
    (("--deepspeed", "missing.json"), "--deepspeed missing.json: no such file"),
    (("--fsdp", "full_shard"), "--fsdp full_shard: not a preset (fsdp2, fsdp2_shard_grad_op, fsdp2_offload) or a "
                               ".json file"),
    (("--deepspeed", "zero2", "--fsdp", "fsdp2"), "--deepspeed and --fsdp exclude each other: pick one engine"),
])
def test_a_bad_engine_flag_is_one_line_at_parse_time(argv, message):
    with pytest.raises(ConfigError) as err:
        parse(*argv)
    assert str(err.value).startswith(message)


def test_a_file_that_is_not_an_engine_config_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad.json is not readable JSON"):
        parse("--deepspeed", str(bad))
    bad.write_text(json.dumps({"zero_optimization": {"stage": 5}}))
    with pytest.raises(ConfigError, match="zero_optimization.stage must be 0, 1, 2 or 3, not 5"):
        parse("--deepspeed", str(bad))
    bad.write_text(json.dumps({"version": 1}))
    with pytest.raises(ConfigError, match="only FSDP2 is supported"):
        parse("--fsdp", str(bad))


@pytest.mark.parametrize("command", ["infer", "eval", "export", "deploy"])
def test_the_one_process_commands_refuse_the_engines_with_a_reason(command):
    with pytest.raises(ConfigError, match="infer, eval, export and deploy run in one process"):
        config_and_host(COMMANDS[command], ["--model", "m", "--deepspeed", "zero2"])


def test_an_engine_refuses_what_it_cannot_shard():
    with pytest.raises(ConfigError, match="--deepspeed zero2: the engine builds the optimizer .* --optimizer lorap"):
        check_engine(parse("--deepspeed", "zero2", "--lorap_lr_ratio", "16"))
    with pytest.raises(ConfigError, match="--fsdp fsdp2: LISA"):
        check_engine(parse("--fsdp", "fsdp2", "--lisa_activated_layers", "1"))
    with pytest.raises(ConfigError, match="a 4/8-bit quantized base cannot be sharded"):
        check_engine(parse("--deepspeed", "zero3", "--train_type", "qlora"))
    check_engine(parse("--deepspeed", "zero3"))  # a plain LoRA run is fine
    check_engine(parse())


def test_an_engine_that_shards_weights_cannot_push_them_to_a_rollout_server():
    flags = ("--rlhf_type", "grpo", "--reward_funcs", "length", "--num_generations", "2",
             "--per_device_train_batch_size", "2", "--use_vllm", "true", "--vllm_mode", "server")
    with pytest.raises(ConfigError, match="--fsdp fsdp2 shards the weights, and --vllm_mode server pushes"):
        check_engine(parse("--fsdp", "fsdp2", *flags, command="rlhf"))
    check_engine(parse("--deepspeed", "zero2", *flags, command="rlhf"))
    with pytest.raises(ConfigError, match="--deepspeed zero2: PPO trains its value model beside the policy"):
        check_engine(parse("--deepspeed", "zero2", "--rlhf_type", "ppo", "--reward_model", "rm", command="rlhf"))


def test_sequence_parallelism_is_ulysses_on_deepspeed_and_needs_cuda():
    with pytest.raises(ConfigError, match="--sequence_parallel_size runs on DeepSpeed's Ulysses .*: add --deepspeed"):
        parse("--sequence_parallel_size", "2")
    with pytest.raises(ConfigError, match="--sequence_parallel_size must be >= 1"):
        parse("--sequence_parallel_size", "0")
    cfg = parse("--deepspeed", "zero2", "--sequence_parallel_size", "2")
    parallel = engine_arguments(cfg.training)["parallelism_config"]
    assert parallel.sp_size == 2 and parallel.sp_backend == "deepspeed"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="runs DeepSpeed's Ulysses on CUDA GPUs.* this machine has no CUDA GPU"):
            check_engine(cfg)


def test_deepspeed_checkpoint_records_pass_the_resume_check_and_other_pickles_do_not(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    ckpt = tmp_path / "checkpoint-2"
    shards = ckpt / "global_step2"
    shards.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    torch.save({"optimizer_state_dict": {"loss_scaler": LossScaler(1.0), "zero_stage": ZeroStageEnum.weights,
                                         "state": torch.zeros(3)}}, shards / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    check_files(ckpt, "--resume_from_checkpoint")
    # the same allowance does not reach a file outside a DeepSpeed shard folder, nor another callable inside one
    torch.save({"loss_scaler": LossScaler(1.0)}, ckpt / "optimizer.pt")
    with pytest.raises(CheckpointError, match="loading it would call deepspeed.runtime.fp16.loss_scaler.LossScaler"):
        check_files(ckpt, "--resume_from_checkpoint")
    (ckpt / "optimizer.pt").unlink()
    with open(shards / "mp_rank_00_model_states.pt", "wb") as fh:
        torch.save({"hook": pickle.loads}, fh)
    with pytest.raises(CheckpointError, match="loading it would call"):
        check_files(ckpt, "--resume_from_checkpoint")


def test_a_lone_process_becomes_rank_zero_of_one(monkeypatch):
    environ: dict = {}
    distributed.lone_rank(environ)
    assert environ["RANK"] == environ["LOCAL_RANK"] == "0" and environ["WORLD_SIZE"] == "1"
    assert environ["MASTER_ADDR"] == "127.0.0.1" and int(environ["MASTER_PORT"]) > 0
    launched = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}
    distributed.lone_rank(launched)  # a launcher's settings stay
    assert launched == {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}


def test_the_presets_ship_as_files_to_copy():
    assert all(preset_path(name).is_file() for name in (*DEEPSPEED_PRESETS, *FSDP_PRESETS))
