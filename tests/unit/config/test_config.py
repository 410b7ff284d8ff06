"""Typed configs: flat keys map onto groups, validation names the flag, round-trips through a dict."""

import dataclasses
from typing import ClassVar

import pytest

from swiftkit.config import CONFIGS, ConfigError, InferConfig, PtConfig, SftConfig

MS_SWIFT_FLAGS = ["model", "model_type", "train_type", "dataset", "val_dataset", "split_dataset_ratio", "max_length", "lora_rank", "lora_alpha", "lora_dropout", "target_modules", "torch_dtype", "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "output_dir", "save_steps", "eval_steps", "logging_steps", "resume_from_checkpoint", "system", "use_hf", "seed"]


def test_sft_accepts_ms_swift_flag_names():
    fields = SftConfig.flat_fields()
    missing = [f for f in MS_SWIFT_FLAGS if f not in fields]
    assert missing == []


def test_infer_accepts_generation_flags():
    fields = InferConfig.flat_fields()
    for name in ("adapters", "max_new_tokens", "temperature", "stream", "system", "model", "val_dataset"):
        assert name in fields


def test_flat_round_trip_and_group_placement():
    cfg = SftConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], "lora_rank": 4, "learning_rate": 3e-4})
    assert cfg.tuner.lora_rank == 4 and cfg.training.learning_rate == 3e-4 and cfg.model.model == "m"
    again = SftConfig.from_flat(cfg.to_flat())
    assert again == cfg


def test_scalar_for_list_field_becomes_list():
    cfg = SftConfig.from_flat({"model": "m", "dataset": "one.jsonl"})
    assert cfg.data.dataset == ["one.jsonl"]


def test_unknown_key_names_closest():
    with pytest.raises(ConfigError, match="did you mean 'lora_rank'"):
        SftConfig.from_flat({"model": "m", "dataset": ["d"], "lora_rnak": 4})


@pytest.mark.parametrize(
    "values, flag",
    [
        ({"learning_rate": -1.0}, "--learning_rate"),
        ({"split_dataset_ratio": 1.5}, "--split_dataset_ratio"),
        ({"lora_rank": 0}, "--lora_rank"),
        ({"model_name": ["a", "b", "c"]}, "--model_name"),
    ],
)
def test_validation_names_flag(values, flag):
    with pytest.raises(ConfigError, match=flag):
        SftConfig.from_flat({"model": "m", "dataset": ["d"], **values})


def test_required_fields():
    with pytest.raises(ConfigError, match="--dataset"):
        SftConfig.from_flat({"model": "m"})
    with pytest.raises(ConfigError, match="--model"):
        SftConfig.from_flat({"dataset": ["d"]})
    with pytest.raises(ConfigError, match="--adapters"):
        InferConfig.from_flat({})


def test_every_field_has_help():
    for cls in CONFIGS:
        for name, (_, field, _) in cls.flat_fields().items():
            assert field.metadata.get("help"), f"{cls.command} --{name} has no help text"


def test_pt_is_its_own_command():
    assert PtConfig.command == "pt" and PtConfig in CONFIGS


def test_no_two_groups_of_a_command_define_the_same_field():
    for cls in CONFIGS:
        seen: dict[str, str] = {}
        for group, gcls in cls.groups():
            for f in dataclasses.fields(gcls):
                assert f.name not in seen, f"`swiftkit {cls.command}`: --{f.name} in {seen[f.name]} and {group}"
                seen[f.name] = group


def test_a_field_in_two_groups_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Sampling:
        temperature: float = 1.0

    @dataclasses.dataclass(frozen=True)
    class Twice(InferConfig):
        command: ClassVar[str] = "twice"
        sampling: Sampling = dataclasses.field(default_factory=Sampling)

    with pytest.raises(TypeError, match="--temperature is defined by two groups, generation and sampling"):
        Twice.flat_fields()


def test_given_records_every_flag_set_even_at_its_default():
    cfg = SftConfig.from_flat({"model": "m", "dataset": ["d"], "max_length": 2048})
    assert cfg.is_given("max_length") and cfg.is_given("model") and not cfg.is_given("system")
    assert cfg.given == {"model", "dataset", "max_length"}


def test_a_validated_config_cannot_be_changed():
    cfg = SftConfig.from_flat({"model": "m", "dataset": ["d"]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.tuner.lora_rank = 4  # derived values go into the run plan, never back into the config


def test_scheduler_names_are_transformers_own():
    from transformers import SchedulerType

    from swiftkit.config.groups import TRANSFORMERS_SCHEDULERS

    assert set(TRANSFORMERS_SCHEDULERS) == {s.value for s in SchedulerType}


@pytest.mark.parametrize("values, message", [
    ({"lr_scheduler_type": "warmup_stable_decay"}, "needs the length of its decay"),
    ({"lr_scheduler_type": "reduce_lr_on_plateau"}, "pass --val_dataset or --split_dataset_ratio"),
    ({"lr_scheduler_kwargs": "[1]"}, "--lr_scheduler_kwargs must be a JSON object"),
    ({"lr_scheduler_kwargs": "{min_lr"}, "--lr_scheduler_kwargs is not valid JSON"),
])
def test_scheduler_rules_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        SftConfig.from_flat({"model": "m", "dataset": ["d"], **values})


def test_rlhf_flags_of_another_method_are_refused():
    from swiftkit.config import RlhfConfig

    with pytest.raises(ConfigError, match="--num_generations applies to --rlhf_type grpo, not dpo"):
        RlhfConfig.from_flat({"model": "m", "dataset": ["d"], "num_generations": 8})
    cfg = RlhfConfig.from_flat({"model": "m", "dataset": ["d"], "rlhf_type": "kto", "desirable_weight": 2.0,
                                "per_device_train_batch_size": 2})
    assert cfg.kto.desirable_weight == 2.0 and cfg.rlhf.beta_value == 0.1
