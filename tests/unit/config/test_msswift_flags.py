"""The ms-swift 4.x flags people use most (names from its command-line docs and example scripts) are each
taken by the matching swiftkit command, under their name or as an alias, or refused with a reason; never
"unrecognized argument". Also the config rules behind several of them (strategies, rlhf --loss_type,
--load_data_args, --attn_impl values)."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from swiftkit.cli.args import build_parser, config_and_host
from swiftkit.cli.flagdoc import msswift_flags
from swiftkit.commands import COMMANDS
from swiftkit.config import EvalConfig, InferConfig, RlhfConfig, SftConfig
from swiftkit.config.flagnames import REFUSED, flag_status
from swiftkit.config.rlhf import COLOCATE_FLAGS, SERVER_FLAGS
from swiftkit.config.values import coerce
from swiftkit.core.errors import ConfigError


def _names(text: str) -> list[str]:
    return text.split()


# ms-swift 4.x flag names (facts: names only), the most used first within each command.
MOST_USED = {
    "sft": _names("""
        model dataset tuner_type save_steps per_device_train_batch_size gradient_accumulation_steps learning_rate
        num_train_epochs logging_steps save_total_limit output_dir eval_steps max_length dataloader_num_workers
        torch_dtype warmup_ratio per_device_eval_batch_size load_from_cache_file dataset_num_proc
        split_dataset_ratio deepspeed lora_rank lora_alpha target_modules attn_impl model_name model_author
        freeze_vit freeze_aligner system save_only_model padding_free load_data_args packing task_type report_to
        quant_method quant_bits external_plugins use_liger_kernel eval_strategy val_dataset gradient_checkpointing
        dataloader_drop_last loss_scale enable_thinking sequence_parallel_size num_labels max_steps streaming
        gradient_checkpointing_kwargs truncation_strategy agent_template experts_impl router_aux_loss_coef
        cached_dataset cached_val_dataset save_strategy label_names add_non_thinking_prefix
        vit_gradient_checkpointing problem_type group_by_length init_weights bnb_4bit_quant_type
        use_logits_to_keep use_galore template modules_to_save metric_for_best_model max_grad_norm
        lr_scheduler_type lazy_tokenize columns vit_lr aligner_lr optimizer optim_args neftune_noise_alpha
        new_special_tokens lisa_activated_layers llamapro_num_new_blocks greater_is_better early_stop_interval
        eval_use_evalscope eval_dataset enable_dft_loss device_map use_dora tuner_backend target_regex
        rope_scaling max_pixels resume_from_checkpoint seed bf16 fp16 warmup_steps weight_decay adam_beta2
        lora_dropout use_hf model_type lorap_lr_ratio train_type evaluation_strategy
    """),
    "rlhf": _names("""
        rlhf_type beta temperature max_completion_length vllm_mode use_vllm vllm_max_model_len
        vllm_gpu_memory_utilization num_generations log_completions reward_funcs vllm_tensor_parallel_size
        sleep_level loss_type external_plugins offload_optimizer offload_model num_iterations epsilon
        vllm_server_host vllm_server_port rpo_alpha teacher_model multi_turn_scheduler max_turns overlong_filter
        lmbda epsilon_high move_model_batches importance_sampling_level steps_per_generation reward_model
        scale_rewards reward_weights advantage_estimator kl_in_reward async_generate dynamic_sample
        ref_model ref_adapters label_smoothing cpo_alpha simpo_gamma desirable_weight undesirable_weight
        center_rewards_coefficient loss_weights num_ppo_epochs kl_coef cliprange vf_coef response_length top_p
        top_k adapters lora_rank deepspeed tuner_type
    """),
    "infer": _names("""
        model adapters infer_backend max_new_tokens temperature stream load_data_args max_batch_size
        vllm_gpu_memory_utilization vllm_max_model_len vllm_tensor_parallel_size result_path val_dataset
        merge_lora write_batch_size top_p top_k stop_words max_length system attn_impl torch_dtype enable_thinking
        vllm_max_lora_rank num_beams metric seed
    """),
    "eval": _names("model adapters eval_dataset eval_limit eval_output_dir eval_backend infer_backend temperature"),
    "export": _names("""
        adapters model output_dir merge_lora quant_method quant_bits quant_n_samples quant_batch_size push_to_hub
        hub_model_id to_ollama to_mcore to_hf exist_ok max_shard_size safe_serialization to_cached_dataset
    """),
    "deploy": _names("""
        model adapters host port served_model_name infer_backend max_new_tokens vllm_gpu_memory_utilization
        max_model_len api_key log_interval verbose
    """),
}
CASES = [(command, flag) for command, flags in MOST_USED.items() for flag in flags]

# Values for flags whose default the command does not accept as it is.
SAMPLES = {"model": "m", "dataset": ["d.jsonl"], "adapters": ["ckpt"], "val_dataset": ["v.jsonl"],
           "reward_funcs": ["format"], "reward_model": "rm", "reward_weights": [1.0], "dpo_loss_weights": [1.0]}
# What each rlhf method needs besides --model and --dataset.
METHOD_NEEDS = {"grpo": {"reward_funcs": ["format"], "per_device_train_batch_size": 4},
                "ppo": {"reward_model": "rm"}, "kto": {"per_device_train_batch_size": 2}}


def test_the_list_is_a_hundred_and_more_ms_swift_flags_documented_on_the_flags_page():
    assert len({flag for flags in MOST_USED.values() for flag in flags}) >= 150
    for command, flags in MOST_USED.items():
        assert set(flags) <= set(msswift_flags(command)), command


def _field(cfg_cls, name):
    group, f, tp = cfg_cls.flat_fields()[name]
    return f, tp


def _base(command: str, name: str) -> dict:
    """The other flags a config needs so that ``name`` (a field) is judged on its own."""
    values = {"model": "m"}
    if command in ("sft", "rlhf"):
        values["dataset"] = ["d.jsonl"]
    if command in ("export",) or name == "merge_lora":
        values["adapters"] = ["ckpt"]
    if command == "eval":
        values["val_dataset"] = ["v.jsonl"]
    if command == "rlhf":
        methods = _field(RlhfConfig, name)[0].metadata.get("methods")
        method = methods[0] if methods else "dpo"
        values.update(rlhf_type=method, **METHOD_NEEDS.get(method, {}))
    if name == "lisa_activated_layers":
        values["train_type"] = "full"
    if command == "rlhf" and name in SERVER_FLAGS + COLOCATE_FLAGS + ("vllm_mode",):
        values.update(use_vllm=True, vllm_mode="server" if name in SERVER_FLAGS else "colocate")
    if name == "load_data_args":
        values["resume_from_checkpoint" if command in ("sft", "rlhf") else "adapters"] = "ckpt"
    return values


def _cli_text(value, tp) -> list[str]:
    """``value`` as command-line words; for a None default, a valid value of the type."""
    inner = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Union else tp
    if value is None:
        literal = typing.get_args(inner) if typing.get_origin(inner) is typing.Literal else ()
        value = literal[0] if literal else {bool: True, int: 1, float: 0.5}.get(inner, "x")
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, list):
        return [str(v) for v in value] or ["x"]
    return [str(value)]


@pytest.mark.parametrize("command,flag", CASES, ids=[f"{c}-{f}" for c, f in CASES])
def test_msswift_flag_is_taken_or_refused_with_its_reason(command, flag):
    cfg_cls = COMMANDS[command].config
    status, name = flag_status(cfg_cls, flag)
    assert status in ("accepted", "renamed", "refused"), f"--{flag} is unknown to `swiftkit {command}`"
    base = ["--model", "m", *(["--dataset", "d.jsonl"] if command in ("sft", "rlhf") else []),
            *(["--adapters", "ckpt"] if command == "export" else [])]
    if status == "refused":
        with pytest.raises(ConfigError) as caught:
            config_and_host(COMMANDS[command], [*base, f"--{flag}", "x"])
        assert str(caught.value) == f"--{flag} is not supported by `swiftkit {command}`: {REFUSED[flag]}"
        return
    name = name or flag
    f, tp = _field(cfg_cls, name)
    value = SAMPLES.get(name, f.default_factory() if callable(f.default_factory) else f.default)
    value = coerce(f"--{name}", value, tp, json_object=f.metadata.get("json_object", False))
    # the Python API / YAML path: the flag's name (or alias) with a valid value
    cfg = cfg_cls.from_flat({**_base(command, name), flag: value})
    group = getattr(cfg, cfg_cls.flat_fields()[name][0])
    assert cfg.is_given(name) and getattr(group, name) == value
    # the command line: argparse knows the spelling and stores it under the field's name
    ns, unknown = build_parser(cfg_cls).parse_known_args([f"--{flag}", *_cli_text(value, tp)])
    assert not unknown and name in vars(ns)


# -- the rules behind the flags ------------------------------------------------------------------


def sft(**values):
    return SftConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], **values})


def rlhf(**values):
    return RlhfConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], **values})


@pytest.mark.parametrize("values,message", [
    ({"eval_strategy": "steps"}, "--eval_strategy steps evaluates on validation data: pass --val_dataset"),
    ({"eval_strategy": "epoch"}, "--eval_strategy epoch evaluates on validation data"),
    ({"save_strategy": "best"}, "--save_strategy best saves when the evaluation metric improves: pass --val_dataset"),
    ({"save_strategy": "best", "split_dataset_ratio": 0.2, "eval_strategy": "no"},
     "--save_strategy best saves when an evaluation improves the metric; --eval_strategy no runs none"),
    ({"eval_steps": 5, "eval_strategy": "epoch", "val_dataset": ["v.jsonl"]},
     "--eval_steps applies to --eval_strategy steps, not epoch"),
])
def test_strategies_that_cannot_work_are_one_line_errors(values, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        sft(**values)


def test_strategies_that_fit_their_data_are_taken():
    assert sft(eval_strategy="no").training.eval_strategy == "no"
    assert sft(eval_strategy="epoch", val_dataset=["v.jsonl"]).training.eval_strategy == "epoch"
    best = sft(save_strategy="best", split_dataset_ratio=0.2, eval_steps=3)
    assert best.training.save_strategy == "best"
    assert sft(save_strategy="epoch").training.save_strategy == "epoch"
    assert sft(save_strategy="no").training.save_strategy == "no"
    with pytest.raises(ConfigError, match="^--rlhf_type ppo does not evaluate: drop --eval_strategy steps"):
        rlhf(rlhf_type="ppo", reward_model="rm", eval_strategy="steps")


def test_loss_type_in_rlhf_is_the_methods_loss_variant():
    dpo = rlhf(rlhf_type="dpo", loss_type="ipo")
    assert dpo.dpo_losses == ["ipo"] and dpo.training.loss_type == "ipo"
    assert rlhf(rlhf_type="dpo").dpo_losses == ["sigmoid"]
    assert rlhf(dpo_loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5]).dpo.dpo_loss_weights == [1.0, 0.5]
    grpo = rlhf(rlhf_type="grpo", reward_funcs=["format"], per_device_train_batch_size=4, loss_type="grpo")
    assert grpo.grpo_loss == "grpo" and grpo.dpo_losses == ["sigmoid"]
    assert rlhf(rlhf_type="grpo", reward_funcs=["format"], per_device_train_batch_size=4).grpo_loss == "dapo"


@pytest.mark.parametrize("values,message", [
    ({"loss_type": "sigmod"}, r"unknown --loss_type 'sigmod' for --rlhf_type dpo \(did you mean 'sigmoid'\?\); valid:"),
    ({"rlhf_type": "grpo", "reward_funcs": ["format"], "per_device_train_batch_size": 4, "loss_type": "fipo"},
     "unknown --loss_type 'fipo' for --rlhf_type grpo"),
    ({"loss_type": "ipo", "dpo_loss_type": ["sigmoid"]}, "--loss_type is --dpo_loss_type for --rlhf_type dpo; give"),
    ({"rlhf_type": "kto", "per_device_train_batch_size": 2, "loss_type": "sigmoid"}, "--rlhf_type kto has one loss"),
    ({"metric": "acc"}, "--metric applies to sft/pt"),
])
def test_rlhf_loss_type_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        rlhf(**values)


def test_the_grpo_and_dpo_configs_get_the_variant(tmp_path):
    from swiftkit.train.rlhf_trainers import method_config

    base = {"output_dir": str(tmp_path), "report_to": "none", "max_steps": 1}
    precision = {"bf16": False, "fp16": False}
    dpo = method_config("dpo", base, rlhf(loss_type="hinge"), max_length=64, precision=precision)
    assert list(dpo.loss_type) == ["hinge"]
    grpo_cfg = rlhf(rlhf_type="grpo", reward_funcs=["format"], per_device_train_batch_size=4, loss_type="dr_grpo",
                    epsilon=0.3)
    grpo = method_config("grpo", {**base, "per_device_train_batch_size": 4}, grpo_cfg, max_length=64,
                         precision=precision, chat_kwargs={"enable_thinking": False})
    assert grpo.loss_type == "dr_grpo" and grpo.epsilon == 0.3
    assert grpo.chat_template_kwargs == {"enable_thinking": False}


def test_load_data_args_needs_the_run_it_reads():
    with pytest.raises(ConfigError, match="^--load_data_args takes the data flags of the run --resume_from_checkpoint"):
        sft(load_data_args=True)
    with pytest.raises(ConfigError, match="^--load_data_args takes the validation data of the --adapters run"):
        InferConfig.from_flat({"model": "m", "load_data_args": True})
    # with --resume_from_checkpoint, --dataset may come from the run's args.json
    cfg = SftConfig.from_flat({"resume_from_checkpoint": "ckpt", "load_data_args": True})
    assert cfg.data_from_checkpoint and not cfg.data.dataset
    with pytest.raises(ConfigError, match="needs --dataset"):
        SftConfig.from_flat({"resume_from_checkpoint": "ckpt"})
    assert EvalConfig.from_flat({"adapters": ["ckpt"], "load_data_args": True}).data.load_data_args


def test_with_data_args_takes_only_the_data_flags_not_given():
    cfg = SftConfig.from_flat({"resume_from_checkpoint": "ckpt", "load_data_args": True, "data_seed": 7})
    run_args = {"dataset": ["train.jsonl"], "val_dataset": [], "split_dataset_ratio": 0.25, "data_seed": 3,
                "columns": '{"q": "query"}', "learning_rate": 0.5, "max_length": 9}
    new, inherited = cfg.with_data_args(run_args)
    assert inherited == {"dataset": ["train.jsonl"], "val_dataset": [], "split_dataset_ratio": 0.25,
                         "columns": '{"q": "query"}'}
    assert new.data.dataset == ["train.jsonl"] and new.data.data_seed == 7 and new.data.split_dataset_ratio == 0.25
    assert new.training.learning_rate == cfg.training.learning_rate and new.template.max_length == 2048
    assert not new.data_from_checkpoint and not new.is_given("dataset")
    with pytest.raises(ConfigError, match="from args.json"):
        cfg.with_data_args({"dataset": ["a"], "split_dataset_ratio": "half"})


def test_inferring_on_the_held_out_split():
    cfg = InferConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], "split_dataset_ratio": 0.1})
    assert cfg.has_val_data
    assert not InferConfig.from_flat({"model": "m", "dataset": ["d.jsonl"]}).has_val_data


def test_attn_impl_values():
    for value in ("sdpa", "eager", "flash_attn", "flash_attention_2", "flash_attention_3", "flex_attention"):
        assert sft(attn_impl=value).model.attn_impl == value
    with pytest.raises(ConfigError, match="'attn_impl' must be one of sdpa, eager, flash_attn, .*did you mean 'flash_attn'"):
        sft(attn_impl="flash")


def test_bf16_and_fp16_exclude_each_other():
    with pytest.raises(ConfigError, match="--bf16 and --fp16 exclude each other"):
        sft(bf16=True, fp16=True)
    assert dataclasses.asdict(sft(bf16=True).training)["bf16"] is True
