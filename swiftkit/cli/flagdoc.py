"""Generate ``docs/flags.md``: how each ms-swift 4.x flag of sft, pt, rlhf, infer, eval, export and deploy
maps to swiftkit (taken as it is, taken under another name, or refused with the reason).

    python -m swiftkit.cli.flagdoc > docs/flags.md

The ms-swift names below are the fields of its argument classes (swift/arguments, ms-swift 4.x),
grouped as ms-swift composes them per command, plus the transformers TrainingArguments its docs and
example scripts use. What swiftkit does with each name comes from the code (fields, their
``aliases`` and :data:`swiftkit.config.flagnames.REFUSED`); a test regenerates the page and compares.
"""

from __future__ import annotations

import functools

from swiftkit.config import DeployConfig, EvalConfig, ExportConfig, InferConfig, RlhfConfig, SftConfig
from swiftkit.config.flagnames import REFUSED, field_aliases
from swiftkit.core.cards import markdown_cell


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# -- ms-swift 4.x argument groups (names only) ------------------------------------------------------
MODEL = _names("""model model_type model_revision task_type torch_dtype attn_impl experts_impl new_special_tokens
    num_labels problem_type rope_scaling device_map max_memory max_model_len local_repo_path init_strategy""")
DATA = _names("""dataset val_dataset cached_dataset cached_val_dataset split_dataset_ratio data_seed dataset_num_proc
    load_from_cache_file dataset_shuffle val_dataset_shuffle streaming interleave_prob stopping_strategy
    shuffle_buffer_size download_mode columns strict remove_unused_columns disable_auto_column_mapping model_name
    model_author custom_dataset_info""")
TEMPLATE = _names("""template system max_length truncation_strategy max_pixels agent_template norm_bbox
    use_chat_template padding_side padding_free loss_scale sequence_parallel_size is_binary_loss_scale
    template_backend response_prefix enable_thinking preserve_thinking add_non_thinking_prefix
    disable_ignore_empty_think""")
GENERATION = _names("""max_new_tokens temperature top_k top_p repetition_penalty num_beams stream stop_words logprobs
    top_logprobs structured_outputs_regex""")
QUANTIZE = _names("""quant_method quant_bits hqq_axis bnb_4bit_compute_dtype bnb_4bit_quant_type
    bnb_4bit_use_double_quant bnb_4bit_quant_storage""")
RAY = _names("use_ray ray_exp_name device_groups")
BASE_OWN = _names("""tuner_backend tuner_type adapters external_plugins custom_register_path seed model_kwargs
    enable_npu_model_patch load_args load_data_args packing packing_length packing_num_proc packing_strategy
    lazy_tokenize use_hf hub_token ddp_timeout ddp_backend ignore_args_error use_swift_lora""")
BASE = BASE_OWN + GENERATION + QUANTIZE + DATA + TEMPLATE + MODEL + RAY

TUNER = _names("""freeze_parameters freeze_parameters_regex freeze_parameters_ratio trainable_parameters
    trainable_parameters_regex freeze_llm freeze_vit freeze_aligner target_modules target_regex target_parameters
    modules_to_save lora_rank lora_alpha lora_dropout lora_bias lora_dtype lorap_lr_ratio use_rslora use_dora
    lora_ga_batch_size lora_ga_iters lora_ga_max_length lora_ga_direction lora_ga_scale lora_ga_stable_gamma
    init_weights fourier_n_frequency fourier_scaling boft_block_size boft_block_num boft_n_butterfly_factor
    boft_dropout vera_rank vera_projection_prng_key vera_dropout vera_d_initial adapter_act adapter_length
    adalora_target_r adalora_init_r adalora_tinit adalora_tfinal adalora_deltaT adalora_beta1 adalora_beta2
    adalora_orth_reg_weight llamapro_num_new_blocks llamapro_num_groups reft_layer_key reft_layers reft_rank
    reft_intervention_type reft_args""")
SWANLAB = _names("""swanlab_token swanlab_project swanlab_workspace swanlab_exp_name swanlab_notification_method
    swanlab_webhook_url swanlab_secret swanlab_sender_email swanlab_receiver_email swanlab_smtp_server
    swanlab_smtp_port swanlab_email_language swanlab_mode""")
TRAIN_MIXIN = _names("""per_device_train_batch_size per_device_eval_batch_size gradient_accumulation_steps
    gradient_checkpointing vit_gradient_checkpointing gradient_checkpointing_kwargs logging_first_step logging_steps
    router_aux_loss_coef enable_dft_loss enable_channel_loss safe_serialization max_shard_size weight_decay adam_beta2
    lr_scheduler_type lr_scheduler_kwargs report_to dataloader_num_workers dataloader_persistent_workers
    dataloader_prefetch_factor use_liger_kernel check_model acc_strategy train_dataloader_shuffle group_by_length
    max_epochs aligner_lr vit_lr use_logits_to_keep ds3_gather_for_generation resume_only_model optimizer loss_type
    mrl_dims eval_metric callbacks early_stop_interval eval_use_evalscope eval_dataset eval_dataset_args eval_limit
    eval_generation_config extra_eval_args use_galore galore_target_modules galore_rank galore_update_proj_gap
    galore_scale galore_proj_type galore_optim_per_parameter galore_with_embedding galore_quantization
    galore_proj_quant galore_proj_bits galore_proj_group_size galore_cos_threshold galore_gamma_proj
    galore_queue_size lisa_activated_layers lisa_step_interval use_flash_ckpt logging_dir warmup_ratio""")
# transformers' TrainingArguments that ms-swift's docs and example scripts use (ms-swift passes all of them on).
HF_TRAINING = _names("""output_dir deepspeed fsdp learning_rate adam_beta1 adam_epsilon full_determinism
    predict_with_generate metric_for_best_model greater_is_better load_best_model_at_end num_train_epochs
    save_strategy save_steps eval_strategy eval_steps eval_on_start save_total_limit max_steps save_on_each_node
    save_only_model resume_from_checkpoint ignore_data_skip ddp_find_unused_parameters dataloader_pin_memory
    dataloader_drop_last optim optim_args neftune_noise_alpha average_tokens_across_devices max_grad_norm
    push_to_hub hub_model_id hub_private_repo bf16 fp16 warmup_steps label_names save_safetensors""")
SFT_OWN = _names("""add_version create_checkpoint_symlink zero_hpz_partition_size deepspeed_autotp_size""")
SFT = SWANLAB + TUNER + BASE + SFT_OWN + TRAIN_MIXIN + HF_TRAINING

VLLM = _names("""vllm_gpu_memory_utilization vllm_tensor_parallel_size vllm_pipeline_parallel_size
    vllm_enable_expert_parallel vllm_max_num_seqs vllm_max_model_len vllm_disable_custom_all_reduce
    vllm_enforce_eager vllm_limit_mm_per_prompt vllm_max_lora_rank vllm_enable_prefix_caching vllm_use_async_engine
    vllm_quantization vllm_reasoning_parser vllm_disable_cascade_attn vllm_mm_processor_cache_gb
    vllm_speculative_config vllm_engine_kwargs vllm_data_parallel_size""")
ROLLOUT = _names("""top_k top_p min_p repetition_penalty stop_words use_vllm vllm_mode vllm_max_num_seqs
    vllm_enable_prefix_caching vllm_enable_lora lora_rank vllm_server_base_url vllm_server_host vllm_server_port
    vllm_server_timeout vllm_server_group_port enable_flattened_weight_sync async_generate structured_outputs_regex
    sleep_level move_model_batches offload_optimizer offload_model wandb_log_unique_prompts generation_batch_size
    steps_per_generation teacher_tag_key""") + VLLM
GRPO = _names("""num_generations reward_funcs reward_weights log_completions num_iterations epsilon epsilon_high
    delta cosine_min_len_value_wrong cosine_max_len_value_wrong cosine_min_len_value_correct
    cosine_max_len_value_correct cosine_max_len repetition_n_grams repetition_max_penalty reward_model
    reward_model_plugin chord_sft_dataset chord_sft_per_device_train_batch_size chord_enable_phi_function
    chord_mu_warmup_steps chord_mu_decay_steps chord_mu_peak chord_mu_valley sync_ref_model ref_model_sync_steps
    ref_model_mixup_alpha multi_turn_scheduler max_turns completion_length_limit_scope vllm_server_pass_dataset
    use_gym_env gym_env dynamic_sample max_resample_times overlong_filter soft_max_length soft_cache_length
    scale_rewards log_entropy top_entropy_quantile importance_sampling_level tau_pos tau_neg advantage_estimator
    kl_in_reward teacher_kl_coef advantage_reweight rlsd_lambda rlsd_reweight_clip_range rlsd_lambda_warmup_steps
    rlsd_lambda_decay_steps rlsd_negative_only sdar_loss_coef sdar_gate_beta real_tau fipo_decay_rate
    fipo_clip_range fipo_clip_high_only fipo_safety_threshold num_generations_eval rollout_importance_sampling_mode
    rollout_importance_sampling_threshold log_rollout_offpolicy_metrics off_policy_sequence_mask_delta""") + ROLLOUT
PPO = _names("""num_ppo_epochs whiten_rewards kl_coef cliprange vf_coef cliprange_value gamma lam num_mini_batches
    local_rollout_forward_batch_size num_sample_generations response_length missing_eos_penalty""")
REWARD_TEACHER = _names("""reward_model reward_adapters reward_model_type reward_model_revision reward_template
    teacher_model teacher_adapters teacher_model_type teacher_model_revision teacher_deepspeed teacher_model_server
    offload_teacher_model""")
RLHF_OWN = _names("""rlhf_type ref_model ref_adapters ref_model_type ref_model_revision beta label_smoothing
    max_completion_length loss_scale rpo_alpha ld_alpha discopop_tau loss_type loss_weights cpo_alpha simpo_gamma
    desirable_weight undesirable_weight temperature center_rewards_coefficient sft_alpha lmbda seq_kd
    gkd_logits_topk max_new_tokens""")
RLHF = SFT + RLHF_OWN + REWARD_TEACHER + GRPO + PPO

MERGE = _names("merge_lora safe_serialization max_shard_size")
SGLANG = _names("""sglang_tp_size sglang_pp_size sglang_dp_size sglang_ep_size sglang_enable_ep_moe
    sglang_mem_fraction_static sglang_context_length sglang_disable_cuda_graph sglang_quantization
    sglang_kv_cache_dtype sglang_enable_dp_attention sglang_disable_custom_all_reduce sglang_speculative_algorithm
    sglang_speculative_num_steps sglang_speculative_eagle_topk sglang_speculative_num_draft_tokens""")
LMDEPLOY = _names("lmdeploy_tp lmdeploy_session_len lmdeploy_cache_max_entry_count lmdeploy_quant_policy "
                  "lmdeploy_vision_batch_size")
INFER = MERGE + LMDEPLOY + SGLANG + VLLM + BASE + _names(
    "infer_backend result_path write_batch_size metric max_batch_size val_dataset_sample reranker_use_activation")
DEPLOY = INFER + _names("""host port api_key ssl_keyfile ssl_certfile owned_by served_model_name verbose
    log_interval log_level max_logprobs vllm_use_async_engine""")
EVAL = DEPLOY + _names("""eval_dataset eval_limit eval_dataset_args eval_generation_config eval_output_dir
    eval_backend local_dataset temperature verbose eval_num_proc extra_eval_args eval_url""")
EXPORT = MERGE + BASE + _names("""output_dir quant_method quant_n_samples quant_batch_size group_size
    to_cached_dataset template_mode to_ollama to_mcore to_hf mcore_model mcore_adapter thread_count
    test_convert_precision test_convert_dtype save_missing_weights push_to_hub hub_model_id hub_private_repo
    commit_message to_peft_format exist_ok""")
# ms-swift 3.x (and transformers') older names whose meaning is unchanged.
OLDER = {"sft": _names("train_type evaluation_strategy custom_register_path metric"),
         "rlhf": _names("train_type evaluation_strategy custom_register_path metric response_length"),
         "infer": _names("tensor_parallel_size gpu_memory_utilization custom_register_path"),
         "eval": _names("tensor_parallel_size gpu_memory_utilization custom_register_path"),
         "deploy": _names("tensor_parallel_size gpu_memory_utilization custom_register_path"),
         "export": _names("custom_register_path")}

# ms-swift command -> (its flag names, the swiftkit config that takes them)
MSSWIFT: dict[str, tuple[tuple[str, ...], type]] = {
    "sft": (SFT, SftConfig),
    "rlhf": (RLHF, RlhfConfig),
    "infer": (INFER, InferConfig),
    "eval": (EVAL, EvalConfig),
    "export": (EXPORT, ExportConfig),
    "deploy": (DEPLOY, DeployConfig),
}


def msswift_flags(command: str) -> list[str]:
    """The ms-swift 4.x flags of ``command`` (and the older names kept as aliases), sorted, each once."""
    return sorted({*MSSWIFT[command][0], *OLDER.get(command, ())})


HEADER = """# ms-swift flags in swiftkit

Generated by `python -m swiftkit.cli.flagdoc`; do not edit by hand.

swiftkit takes ms-swift's command-line flags (4.x names; 3.x names where the meaning is the same).
Each flag of `swift sft` (`pt` takes the same), `swift rlhf`, `swift infer`, `swift eval`,
`swift export` and `swift deploy` is, in the matching `swiftkit` command:

- **taken** as it is (`yes` below): same name, same meaning;
- **taken under another name** (`→ --name`): the name is an alias of swiftkit's flag, accepted on
  the command line, in YAML files and as a Python API keyword; `--help` shows it next to the flag,
  and `args.json` records swiftkit's name. Giving both names is an error;
- **refused** (`refused`): a one-line error says why and what to use instead (the reasons are below);
  never "unrecognized argument".

A flag refused by one command may be taken by another (`--seed` trains in `sft`; `infer` seeds
sampling with `--data_seed`). Where ms-swift takes any transformers `TrainingArguments` field,
swiftkit takes the ones listed here. Values can differ too: swiftkit's defaults are its own
(`swiftkit sft --help`), `--attn_impl flash_attn` means `flash_attention_2` as in ms-swift, and
`--loss_type` in `rlhf` is `--dpo_loss_type` for dpo and `--grpo_loss_type` for grpo.

## What some of them do

```bash
swiftkit sft --model smollm2-135m-instruct --dataset data.jsonl --split_dataset_ratio 0.25 --bf16 true \\
    --save_strategy best --eval_steps 1 --attn_impl sdpa --output_dir out-flags
swiftkit infer --adapters out-flags --load_data_args true --max_new_tokens 32
swiftkit rlhf --rlhf_type dpo --loss_type ipo --model smollm2-135m-instruct --dataset dpo-mix-7k --output_dir out-dpo
```

- `--bf16 true` runs the forward pass under bfloat16 autocast; the weights stay in `--torch_dtype`. It
  works on the CPU (natively with AVX512-BF16/AMX) and is on by default on a CUDA GPU that supports
  it. On a CPU without bfloat16 instructions torch emulates them: a LoRA step of SmolLM2-135M took
  13x as long as in float32 on an AVX2 CPU (121 s vs 9.3 s, loss 7.4508 vs 7.4471), and the run says
  so in one line. `--fp16 true` needs a CUDA GPU: on the CPU it is refused, because the trainer (accelerate) would
  quietly train in float32.
- `--attn_impl sdpa|eager|flex_attention|flash_attn|flash_attention_2|3|4` is passed to transformers
  wherever a model loads (sft, pt, rlhf, infer, eval, export, deploy). The flash-attention kernels
  need a CUDA GPU and their package; without them the command stops before any weights load.
- `--gradient_checkpointing_kwargs '{"use_reentrant": false}'` (JSON, or a mapping in YAML) goes to
  torch's checkpoint with `--gradient_checkpointing true`; `use_reentrant` is false unless given.
- `--dataloader_drop_last true` drops the last, incomplete batch of each epoch.
- `--save_only_model true` writes checkpoints without optimizer, scheduler and RNG state. A run
  resumed from one continues from its step but not exactly (a new optimizer state and learning-rate
  schedule); swiftkit says so when it resumes.
- `--save_strategy steps|epoch|no|best`: `no` still writes the final checkpoint; `best` saves when
  `--metric_for_best_model` (eval loss by default) improves, so it needs evaluation data.
  `--eval_strategy steps|epoch` needs `--val_dataset` or `--split_dataset_ratio`, and `--eval_steps`
  goes with `--eval_strategy steps`.
- `--load_data_args true` takes the data flags you did not give (`--dataset`, `--val_dataset`,
  `--split_dataset_ratio`, `--data_seed`, `--columns`, ...) from a run's `args.json`: in `infer` and
  `eval` from the `--adapters` run, which then answer exactly the rows that run held out for
  validation; in `sft` and `rlhf` from the run `--resume_from_checkpoint` continues.
- `--enable_thinking true|false` is passed to every render of a chat template that reads it (Qwen3
  and others): training ids, labels and generation prompts alike. Inference takes the training run's
  value from its `args.json` unless you give the flag. A template that does not read it ignores it,
  with a note.
- `--loss_type` in `rlhf` chooses the loss variant of dpo (`sigmoid`, `ipo`, `hinge`, ...; several
  with `--dpo_loss_type A B --dpo_loss_weights ...`) or grpo (`grpo`, `dapo`, `dr_grpo`, `bnpo`, ...);
  the other methods have one loss.
"""

COLUMNS = ("sft", "rlhf", "infer", "eval", "export", "deploy")


@functools.cache
def _names_of(cfg_cls) -> tuple[frozenset, dict]:
    return frozenset(cfg_cls.flat_fields()), field_aliases(cfg_cls)


def _status(cfg_cls, flag: str) -> tuple[str, str | None]:
    """:func:`~swiftkit.config.flagnames.flag_status`, with each config's field names read once."""
    fields, aliases = _names_of(cfg_cls)
    if flag in fields:
        return "accepted", None
    if flag in aliases:
        return "renamed", aliases[flag]
    return ("refused", REFUSED[flag]) if flag in REFUSED else ("unknown", None)


def _cell(command: str, flag: str) -> str:
    names, cfg_cls = MSSWIFT[command]
    if flag not in names and flag not in OLDER.get(command, ()):
        return ""
    status, detail = _status(cfg_cls, flag)
    return {"accepted": "yes", "renamed": f"→ --{detail}", "refused": "refused"}.get(status, "?")


def render() -> str:
    """The whole page."""
    out = [HEADER, "## Flags\n", "| ms-swift flag | " + " | ".join(COLUMNS) + " |",
           "|---|" + "---|" * len(COLUMNS)]
    every = sorted({flag for command in COLUMNS for flag in msswift_flags(command)})
    for flag in every:
        out.append(f"| `--{flag}` | " + " | ".join(_cell(c, flag) for c in COLUMNS) + " |")
    out += ["", "## Aliases\n", "| alias | swiftkit flag | commands |", "|---|---|---|"]
    for alias, name, commands in aliases_table():
        out.append(f"| `--{alias}` | `--{name}` | {', '.join(commands)} |")
    out += ["", "## Why a flag is refused\n",
            "The error names the flag, the command and this reason. Refused by the commands listed.\n",
            "| flag | refused by | reason |", "|---|---|---|"]
    for flag, commands in refused_table():
        out.append(f"| `--{flag}` | {', '.join(commands)} | {markdown_cell(REFUSED[flag])} |")
    return "\n".join(out) + "\n"


SWIFTKIT_COMMANDS = (("sft", SftConfig), ("rlhf", RlhfConfig), ("infer", InferConfig), ("eval", EvalConfig),
                     ("export", ExportConfig), ("deploy", DeployConfig))


def aliases_table() -> list[tuple[str, str, list[str]]]:
    """``(alias, field, commands)`` for every alias the configs declare (``pt`` is as ``sft``)."""
    found: dict[tuple[str, str], list[str]] = {}
    for command, cfg_cls in SWIFTKIT_COMMANDS:
        for alias, name in field_aliases(cfg_cls).items():
            found.setdefault((alias, name), []).append(command)
    return [(alias, name, commands) for (alias, name), commands in sorted(found.items())]


def refused_table() -> list[tuple[str, list[str]]]:
    """``(flag, commands that refuse it)`` for every entry of REFUSED."""
    out = []
    for flag in sorted(REFUSED):
        commands = [c for c, cfg_cls in SWIFTKIT_COMMANDS if _status(cfg_cls, flag)[0] == "refused"]
        out.append((flag, commands))
    return out


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
