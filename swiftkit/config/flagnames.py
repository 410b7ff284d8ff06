"""Other tools' flag names: aliases of swiftkit's fields, and the flags swiftkit refuses on purpose.

An alias is declared on the field itself (``aliases=("tuner_type",)`` in its metadata): the command
line, YAML files and API keyword arguments accept it, ``--help`` shows it beside the field's own
name, and the config records the field's name. A refused flag (:data:`REFUSED`) is one swiftkit
knows from ms-swift (4.x, or 3.x) or LLaMA-Factory and deliberately does not take: giving it is a
one-line error with the reason and the alternative, never "unrecognized argument". A refusal applies
only to commands that have no field (or alias) of that name: ``--seed`` is refused by `infer` and
taken by `sft`. The table in ``docs/flags.md`` lists both (``python -m swiftkit.cli.flagdoc``); a
test checks it against these definitions.
"""

from __future__ import annotations

import dataclasses

from swiftkit.core.errors import ConfigError

# Reasons several flags share (each names what to use instead).
_ONE_DEVICE = ("each rank holds the whole model on one device; several GPUs or machines train data-parallel (DDP: "
               "NPROC_PER_NODE=N swiftkit sft ..., see docs/distributed.md)")
_DDP_FIXED = ("distributed runs use DDP with this setting fixed: unused parameters are looked for, the loss is "
              "normalised by the labelled tokens of all ranks, and checkpoints are written once, by rank 0")
_DEEPSPEED = ("a DeepSpeed setting goes into the --deepspeed JSON file (start from a copy of a shipped preset, "
              "see docs/distributed.md)")
_MEGATRON = ("Megatron is not supported: swiftkit trains through transformers/peft and writes safetensors "
             "transformers loads")
_MULTIMODAL = ("swiftkit trains and serves vision-language models on images, and trains on videos and audio, through "
               "the model's own processor (docs/multimodal.md)")
_PROCESSOR = ("image sizes come from the model's processor (its preprocessor_config.json: edit a copy of the model "
              "folder to change them); there is no per-run override")
_MM_PARTS = ("the vision tower and the aligner train with the run's --learning_rate when unfrozen (--freeze_vit false, "
             "--freeze_aligner false); separate learning rates are not supported")
_VLLM_IMAGES = "images are served by --infer_backend transformers; the vLLM engine takes text prompts only"
_NPU = "Ascend NPU is not supported (CUDA GPUs and the CPU are)"
_HUB_UPLOAD = ("training runs are not uploaded: push a checkpoint as a model with `swiftkit export --adapters CKPT "
               "--push_to_hub --hub_model_id owner/name`")
_RAY = "Ray is not supported: each command runs in one process"
_TASKS = ("swiftkit trains causal LMs, and reward models with `swiftkit rlhf --rlhf_type rm`; classification, "
          "embedding and reranker tasks are not supported")
_GKD = ("GKD and teacher models (distillation) are not supported: --rlhf_type takes dpo, orpo, simpo, cpo, kto, rm, "
        "ppo, grpo")
_GRPO = ("not in swiftkit's GRPO (TRL's GRPOTrainer), which takes --grpo_loss_type (or --loss_type), --scale_rewards, "
         "--num_iterations, --num_generations, --cliprange (--epsilon) and --beta")
_PPO = ("not in swiftkit's PPO trainer, which takes --beta (the KL coefficient), --num_ppo_epochs, --cliprange, "
        "--cliprange_value, --vf_coef, --gamma, --lam, --missing_eos_penalty")
_ROLLOUT_VLLM = ("not in swiftkit's vLLM rollouts: grpo/ppo generate in the training process or on a `swiftkit "
                 "rollout` server (--use_vllm true --vllm_mode server); grpo also with vLLM colocated (--vllm_mode "
                 "colocate)")
_VLLM_ENGINE = ("not exposed by the vllm engine (--infer_backend vllm), which takes --tensor_parallel_size, "
                "--gpu_memory_utilization, --vllm_max_model_len and --vllm_max_lora_rank")
_OTHER_ENGINE = ("the SGLang and LMDeploy engines are not built in: --infer_backend transformers or vllm, or a "
                 "plugin's engine (swiftkit_get_infer_engine)")
_SAMPLING = ("a sampling flag of infer/eval/deploy; rlhf rollouts (grpo/ppo) take --temperature and "
             "--max_completion_length")
_QUANT_LOAD = ("quantizing while loading is for training (QLoRA: sft/rlhf --quant_method bnb --quant_bits 4); "
               "infer/deploy load quantized checkpoints as they are; `swiftkit quantize` writes them")
_GALORE = ("not supported by swiftkit's GaLore (--optimizer galore), which takes --galore_rank, "
           "--galore_update_proj_gap, --galore_scale, --galore_proj_type, --galore_target_modules")
_LORA_GA = ("LoRA-GA initialisation is not supported: --init_weights takes true, false, gaussian, pissa, "
            "pissa_niter_N, olora, loftq, eva, corda")
_REWARD_PARAMS = ("the built-in GRPO rewards are accuracy, format and length (`swiftkit list rewards`); register a "
                  "cosine/repetition/overlong reward with a plugin (swiftkit_register_reward_funcs)")
_BENCH_IN_TRAINING = ("benchmarks run natively during training (--eval_benchmarks NAMES, at every --eval_steps); "
                      "the evalscope backend is `swiftkit eval --eval_backend evalscope --adapters RUN`")
_GEN_CONFIG = ("eval generates with the sampling flags: --max_new_tokens, --temperature, --top_p, --top_k, "
               "--repetition_penalty")
_CACHED = ("pre-tokenized dataset folders are not supported: swiftkit caches encoded rows itself "
           "(--load_from_cache_file, keyed by data, template, tokenizer and --max_length)")
_SIDE_MODEL = ("--ref_model/--reward_model take a local folder, a registered name or a hub id (its model type "
               "comes from its config.json or args.json); download a revision or merge adapters first")
_THINKING = ("the chat template decides how reasoning renders; --enable_thinking is passed to chat templates "
             "that take it")
_DATALOADER = "the DataLoader settings are fixed; --dataloader_num_workers and --dataloader_drop_last are flags"
_SHUFFLE = "training rows are shuffled every epoch, seeded by --data_seed; not switchable"
_LOSS_PLUGIN = "not built in: a loss plugin selected with --loss_type can compute it (swiftkit_get_loss)"
_SAFETENSORS = "checkpoints and exports are always safetensors, in transformers' default shard size"
_MOE = "MoE-specific settings are not supported: transformers' defaults apply"
_ROLLOUT_LOG = "generated rollouts are not logged; the reward and KL of each step are in logging.jsonl"

# flag name -> why swiftkit does not take it, naming what to use instead (one line).
REFUSED: dict[str, str] = {
    # -- base ----------------------------------------------------------------------------------
    "tuner_backend": "swiftkit trains through peft; the unsloth backend is not supported",
    "adapters": ("`swiftkit sft` starts new adapters or resumes a run (--resume_from_checkpoint, exact); "
                 "`swiftkit rlhf --adapters CKPT` continues training a LoRA adapter"),
    "seed": ("infer and eval seed sampling with --data_seed, a deploy request with its own seed field; export "
             "samples nothing"),
    "model_kwargs": _PROCESSOR,
    "enable_npu_model_patch": _NPU,
    "load_args": ("swiftkit always reads the args.json of --adapters and --resume_from_checkpoint for the model and "
                  "template (flags you give win); --load_data_args adds the data flags"),
    "hub_token": ("hub credentials come from the hub clients' own login (`hf auth login`, `modelscope login`) or "
                  "their token variables (HF_TOKEN, MODELSCOPE_API_TOKEN), never from a flag"),
    **dict.fromkeys(("ddp_timeout", "ddp_backend", "deepspeed", "fsdp", "sequence_parallel_size"),
                    "infer, eval, export and deploy run in one process; distributed runs (and these flags) are for "
                    "sft, pt and rlhf (NPROC_PER_NODE=N swiftkit sft ...)"),
    "ignore_args_error": "for notebooks, call the Python API (swiftkit.sft(...), swiftkit.infer(...)) instead",
    "use_swift_lora": "swiftkit trains through peft only",
    **dict.fromkeys(("adapter_act", "adapter_length"), "the adapter tuner is not built in: --train_type lora (or a "
                    "plugin's tuner through swiftkit_get_tuner)"),
    # -- model ---------------------------------------------------------------------------------
    "task_type": _TASKS,
    "num_labels": _TASKS,
    "problem_type": _TASKS,
    "reranker_use_activation": _TASKS,
    "mrl_dims": _TASKS,
    "experts_impl": _MOE,
    "router_aux_loss_coef": _MOE,
    "new_special_tokens": ("adding special tokens is not supported yet: use a model whose tokenizer has them "
                           "(tokens added to a tokenizer before training are kept)"),
    "rope_scaling": ("RoPE context extension is not supported: set rope_scaling in the model's config.json "
                     "before loading it"),
    "max_model_len": ("sft/rlhf/infer/export do not extend the context (set rope_scaling in config.json); deploy's "
                      "and rollout's --max_model_len cap the tokens a request may use"),
    "device_map": _ONE_DEVICE + "; the model is not split across devices",
    "max_memory": _ONE_DEVICE + "; the model is not split across devices",
    "local_repo_path": ("models that need a source checkout are not supported: swiftkit loads the vision-language "
                        "models transformers implements natively (swiftkit list models --tag vision)"),
    "init_strategy": "weights missing from a checkpoint are initialised by transformers' own rule; not configurable",
    # -- data ----------------------------------------------------------------------------------
    **dict.fromkeys(("dataset", "val_dataset", "split_dataset_ratio", "data_seed", "columns", "dataset_num_proc",
                     "lazy_tokenize", "load_data_args", "load_from_cache_file", "model_name", "model_author",
                     "streaming"),
                    "`swiftkit export` and `deploy` read no dataset (data flags belong to training, infer and eval)"),
    "packing": "a training flag (sft/pt): generation batches are never packed",
    "padding_free": "a training flag (sft/pt/rlhf): generation batches are left-padded",
    "tuner_type": "a training flag: infer/eval/export/deploy read the tuner from the --adapters run (its args.json)",
    "cached_dataset": _CACHED,
    "cached_val_dataset": _CACHED,
    "dataset_shuffle": _SHUFFLE,
    "val_dataset_shuffle": "validation rows keep their order; not switchable",
    "train_dataloader_shuffle": _SHUFFLE,
    "interleave_prob": ("datasets are mixed by concatenation and a seeded shuffle; weigh one with name#N "
                        "(rows sampled or repeated)"),
    "stopping_strategy": "datasets are mixed by concatenation and a seeded shuffle; every row is used",
    "shuffle_buffer_size": "--streaming mixes rows with a seeded 1000-row shuffle buffer; not configurable",
    "download_mode": "to download a dataset again, delete its copy in the hub's cache folder",
    "strict": ("swiftkit is strict by default (a bad row stops the run, naming file and line); "
               "--skip_bad_rows leaves bad rows out and counts them"),
    "remove_unused_columns": ("rows are encoded to input_ids/labels; extra columns never reach the model "
                              "(a loss plugin sees the batch)"),
    "disable_auto_column_mapping": ("common column names (query/response, instruction/input/output, ...) are "
                                    "always recognised; --columns renames others"),
    "custom_dataset_info": ("register datasets with a dataset card (YAML) in a plugin (swiftkit_register_datasets), "
                            "or pass files to --dataset"),
    "val_dataset_sample": "sample validation rows with --val_dataset FILE#N",
    # -- template ------------------------------------------------------------------------------
    "max_pixels": _PROCESSOR,
    "norm_bbox": ("grounding boxes are taken as the data writes them (no coordinate normalisation): "
                  + _MULTIMODAL),
    "agent_template": ("tools and tool calls render through the model's own chat template (rows' tools and "
                       "tool_calls, as in apply_chat_template)"),
    "use_chat_template": "`swiftkit pt` trains on raw text; sft always renders with the chat template",
    "padding_side": ("training batches are padding-free (--padding_free) or right-padded, generation batches "
                     "left-padded; not configurable"),
    "disable_ignore_empty_think": _THINKING,
    "is_binary_loss_scale": "--loss_scale takes default, last_round or all; \"loss\": false on a message excludes it",
    "template_backend": "the model's jinja chat template is always used, in training and serving alike",
    "response_prefix": "reply prefixes are not supported; --enable_thinking controls the thinking block",
    "preserve_thinking": _THINKING,
    "add_non_thinking_prefix": _THINKING,
    # -- generation ----------------------------------------------------------------------------
    "max_new_tokens": _SAMPLING,
    "temperature": _SAMPLING,
    "top_k": _SAMPLING,
    "top_p": _SAMPLING,
    "min_p": _SAMPLING,
    "repetition_penalty": _SAMPLING,
    "stream": "an infer/deploy flag: replies are streamed as they are generated",
    "num_beams": "beam search is not supported: decoding is greedy (--temperature 0) or sampled",
    "stop_words": ("generation stops at the template's end-of-turn tokens; a registered template can add "
                   "stop words (stop_words in its card)"),
    "logprobs": "log-probabilities are returned per request by `swiftkit deploy` (OpenAI API logprobs field)",
    "top_logprobs": "log-probabilities are returned per request by `swiftkit deploy` (OpenAI API top_logprobs field)",
    "structured_outputs_regex": "guided decoding is not supported",
    # -- quantization --------------------------------------------------------------------------
    "quant_method": _QUANT_LOAD,
    "quant_bits": _QUANT_LOAD,
    "hqq_axis": "only bitsandbytes quantization is built in (--quant_method bnb)",
    "bnb_4bit_compute_dtype": _QUANT_LOAD,
    "bnb_4bit_quant_type": _QUANT_LOAD,
    "bnb_4bit_use_double_quant": _QUANT_LOAD,
    "bnb_4bit_quant_storage": _QUANT_LOAD,
    # -- ray -----------------------------------------------------------------------------------
    "use_ray": _RAY,
    "ray_exp_name": _RAY,
    "device_groups": _RAY,
    # -- trainer -------------------------------------------------------------------------------
    "vit_gradient_checkpointing": ("--gradient_checkpointing applies to the whole model, the vision tower included; "
                                   "there is no separate switch"),
    "vit_lr": _MM_PARTS,
    "aligner_lr": _MM_PARTS,
    "zero_hpz_partition_size": _DEEPSPEED,
    "deepspeed_autotp_size": "DeepSpeed AutoTP (tensor-parallel training) is not supported: ZeRO shards data-parallel",
    "teacher_deepspeed": "distillation with a teacher model (GKD) is not supported",
    "ds3_gather_for_generation": ("GRPO under ZeRO-3 gathers the weights for each generation (TRL's way); not "
                                  "switchable"),
    "full_determinism": ("training is seeded by --seed and --data_seed; deterministic-only kernels are not "
                         "switchable"),
    "logging_first_step": "the first optimizer step is always logged",
    "enable_dft_loss": _LOSS_PLUGIN,
    "enable_channel_loss": _LOSS_PLUGIN,
    "safe_serialization": _SAFETENSORS,
    "save_safetensors": _SAFETENSORS,
    "max_shard_size": _SAFETENSORS,
    "logging_dir": "TensorBoard logs go to <run folder>/runs; the run folder is --output_dir/v{N}-{timestamp}",
    "max_epochs": "with --streaming, set --max_steps; otherwise --num_train_epochs",
    "eval_on_start": "the first evaluation runs after --eval_steps steps (or the first epoch)",
    "save_on_each_node": _DDP_FIXED,
    "ddp_find_unused_parameters": _DDP_FIXED,
    "average_tokens_across_devices": _DDP_FIXED,
    "resume_only_model": ("--resume_from_checkpoint resumes exactly (weights, optimizer, schedule, data order); to "
                          "start a new run from trained weights pass them as --model (full) or rlhf --adapters (LoRA)"),
    "ignore_data_skip": ("--resume_from_checkpoint resumes exactly (weights, optimizer, schedule, data order); to "
                         "start a new run from trained weights pass them as --model (full) or rlhf --adapters (LoRA)"),
    "dataloader_pin_memory": _DATALOADER,
    "dataloader_persistent_workers": _DATALOADER,
    "dataloader_prefetch_factor": _DATALOADER,
    "group_by_length": "--padding_free (on by default) and --packing remove padding without grouping rows by length",
    "use_logits_to_keep": "the LM head already runs only where a label is; not switchable",
    "push_to_hub": _HUB_UPLOAD,
    "hub_model_id": _HUB_UPLOAD,
    "hub_private_repo": _HUB_UPLOAD,
    "commit_message": _HUB_UPLOAD,
    "warmup_steps": "warm-up is set as a fraction of all steps: --warmup_ratio",
    "label_names": "the labels column is always `labels`, built from the template's reply spans",
    # -- tuners --------------------------------------------------------------------------------
    "target_parameters": ("LoRA on parameters (MoE experts) is not supported yet: choose modules with "
                          "--target_modules or --target_regex"),
    "lora_ga_batch_size": _LORA_GA,
    "lora_ga_iters": _LORA_GA,
    "lora_ga_max_length": _LORA_GA,
    "lora_ga_direction": _LORA_GA,
    "lora_ga_scale": _LORA_GA,
    "lora_ga_stable_gamma": _LORA_GA,
    "fourier_n_frequency": "the fourierft tuner is not built in (a plugin can add it through swiftkit_get_tuner)",
    "fourier_scaling": "the fourierft tuner is not built in (a plugin can add it through swiftkit_get_tuner)",
    "use_galore": "GaLore is an optimizer here: --optimizer galore",
    "galore_optim_per_parameter": _GALORE,
    "galore_with_embedding": _GALORE,
    "galore_quantization": _GALORE,
    "galore_proj_quant": _GALORE,
    "galore_proj_bits": _GALORE,
    "galore_proj_group_size": _GALORE,
    "galore_cos_threshold": _GALORE,
    "galore_gamma_proj": _GALORE,
    "galore_queue_size": _GALORE,
    "reft_args": "reft takes --reft_layers, --reft_rank and --reft_intervention_type",
    "reft_layer_key": "reft takes --reft_layers, --reft_rank and --reft_intervention_type",
    # -- training (ms-swift's own) -------------------------------------------------------------
    "add_version": "runs always go to --output_dir/v{N}-{timestamp}, so a run never overwrites another",
    "check_model": "local model files are always checked before loading (nothing is downloaded for the check)",
    "create_checkpoint_symlink": ("train_result.json names the last checkpoint, and --adapters and "
                                  "--resume_from_checkpoint take a run folder (its last complete checkpoint)"),
    "packing_length": "packed rows hold up to --max_length tokens",
    "packing_num_proc": "packing runs in one process (it is fast next to tokenizing, see --dataset_num_proc)",
    "packing_strategy": "--packing bin-packs rows best-fit decreasing; not configurable",
    "acc_strategy": "token accuracy is reported during evaluation; not configurable",
    "eval_use_evalscope": _BENCH_IN_TRAINING,
    "extra_eval_args": _BENCH_IN_TRAINING,
    "eval_dataset_args": "--eval_benchmarks take per-benchmark settings from their cards; --eval_few_shot and "
                         "--eval_limit apply to all",
    "eval_generation_config": _GEN_CONFIG,
    "use_flash_ckpt": "checkpoints are written by transformers' Trainer, each complete or removed",
    "swanlab_token": "swanlab reads its own login (`swanlab login`); --report_to swanlab --tracker_mode online uploads",
    "swanlab_project": "--tracker_project names the project of every --report_to tracker",
    "swanlab_workspace": "swanlab reads its own settings; --tracker_project names the project",
    "swanlab_exp_name": "each tracker's run is named after its run folder",
    "swanlab_notification_method": "tracker notifications are not supported",
    "swanlab_webhook_url": "tracker notifications are not supported",
    "swanlab_secret": "tracker notifications are not supported",
    "swanlab_mode": "--tracker_mode offline|online applies to every --report_to tracker",
    **{f"swanlab_{name}": "tracker notifications are not supported" for name in (
        "sender_email", "receiver_email", "smtp_server", "smtp_port", "email_language")},
    # -- rlhf ----------------------------------------------------------------------------------
    "ref_adapters": ("with --adapters the reference is the starting adapter itself (frozen); --ref_model takes "
                     "another model"),
    "ref_model_type": _SIDE_MODEL,
    "ref_model_revision": _SIDE_MODEL,
    "reward_adapters": _SIDE_MODEL,
    "reward_model_type": _SIDE_MODEL,
    "reward_model_revision": _SIDE_MODEL,
    "ld_alpha": "LD-DPO's length weighting is not supported; --loss_type (dpo) takes TRL's DPO losses",
    "discopop_tau": "the discopop loss (--loss_type discopop) uses TRL's default tau; not configurable",
    "lmbda": _GKD,
    "sft_alpha": _GKD,
    "gkd_logits_topk": _GKD,
    "seq_kd": _GKD,
    "teacher_model": _GKD,
    "teacher_adapters": _GKD,
    "teacher_model_type": _GKD,
    "teacher_model_revision": _GKD,
    "teacher_model_server": _GKD,
    "teacher_tag_key": _GKD,
    "offload_teacher_model": _GKD,
    "log_completions": _ROLLOUT_LOG,
    "kl_coef": "--beta is the KL coefficient of ppo (and grpo)",
    "whiten_rewards": _PPO,
    "num_mini_batches": _PPO,
    "local_rollout_forward_batch_size": _PPO,
    "num_sample_generations": _PPO,
    "steps_per_generation": ("each optimizer step generates its own replies: per_device_train_batch_size x "
                             "gradient_accumulation_steps of them (--num_generations per prompt)"),
    "generation_batch_size": ("each optimizer step generates its own replies: per_device_train_batch_size x "
                              "gradient_accumulation_steps of them (--num_generations per prompt)"),
    "num_generations_eval": _GRPO,
    "real_tau": _GRPO,
    **{f"chord_{name}": _GRPO for name in (
        "sft_dataset", "sft_per_device_train_batch_size", "enable_phi_function", "mu_warmup_steps", "mu_decay_steps",
        "mu_peak", "mu_valley")},
    "wandb_log_unique_prompts": _ROLLOUT_LOG,
    "reward_template": "the reward model scores prompt + reply rendered with its own chat template (or the policy's)",
    "reward_model_plugin": "a plugin adds rewards as reward functions (swiftkit_register_reward_funcs)",
    "fipo_decay_rate": _GRPO,
    "fipo_clip_range": _GRPO,
    "fipo_clip_high_only": _GRPO,
    "fipo_safety_threshold": _GRPO,
    "epsilon_high": _GRPO,
    "tau_pos": _GRPO,
    "tau_neg": _GRPO,
    "dynamic_sample": _GRPO,
    "max_resample_times": _GRPO,
    "overlong_filter": _GRPO,
    "delta": _GRPO,
    "importance_sampling_level": _GRPO,
    "advantage_estimator": _GRPO,
    "kl_in_reward": _GRPO,
    "teacher_kl_coef": _GRPO,
    "advantage_reweight": _GRPO,
    "rlsd_lambda": _GRPO,
    "rlsd_reweight_clip_range": _GRPO,
    "rlsd_lambda_warmup_steps": _GRPO,
    "rlsd_lambda_decay_steps": _GRPO,
    "rlsd_negative_only": _GRPO,
    "sdar_loss_coef": _GRPO,
    "sdar_gate_beta": _GRPO,
    "sync_ref_model": _GRPO,
    "ref_model_mixup_alpha": _GRPO,
    "ref_model_sync_steps": _GRPO,
    "top_entropy_quantile": _GRPO,
    "log_entropy": _GRPO,
    "rollout_importance_sampling_mode": _GRPO,
    "rollout_importance_sampling_threshold": _GRPO,
    "log_rollout_offpolicy_metrics": _GRPO,
    "off_policy_sequence_mask_delta": _GRPO,
    "multi_turn_scheduler": "multi-turn and environment rollouts are not supported: each prompt gets one reply",
    "max_turns": "multi-turn and environment rollouts are not supported: each prompt gets one reply",
    "gym_env": "multi-turn and environment rollouts are not supported: each prompt gets one reply",
    "use_gym_env": "multi-turn and environment rollouts are not supported: each prompt gets one reply",
    "vllm_server_pass_dataset": _ROLLOUT_VLLM,
    "vllm_server_group_port": _ROLLOUT_VLLM,
    "async_generate": _ROLLOUT_VLLM,
    "enable_flattened_weight_sync": _ROLLOUT_VLLM,
    "sleep_level": ("a grpo flag of vLLM colocated in training (rlhf --use_vllm true --vllm_mode colocate); a "
                    "`swiftkit rollout` server keeps its GPU memory"),
    "offload_optimizer": _ROLLOUT_VLLM,
    "offload_model": _ROLLOUT_VLLM,
    "completion_length_limit_scope": _ROLLOUT_VLLM,
    "move_model_batches": _ROLLOUT_VLLM,
    "vllm_enable_lora": _ROLLOUT_VLLM,
    "cosine_min_len_value_wrong": _REWARD_PARAMS,
    "cosine_max_len_value_wrong": _REWARD_PARAMS,
    "cosine_min_len_value_correct": _REWARD_PARAMS,
    "cosine_max_len_value_correct": _REWARD_PARAMS,
    "cosine_max_len": _REWARD_PARAMS,
    "repetition_n_grams": _REWARD_PARAMS,
    "repetition_max_penalty": _REWARD_PARAMS,
    "soft_max_length": _REWARD_PARAMS,
    "soft_cache_length": _REWARD_PARAMS,
    # -- inference engines ---------------------------------------------------------------------
    "infer_backend": ("an infer/eval/deploy/rollout flag; grpo/ppo generate in the training process, or on a "
                      "`swiftkit rollout --infer_backend ...` server (--use_vllm true --vllm_mode server)"),
    "vllm_max_model_len": _ROLLOUT_VLLM,
    "vllm_max_lora_rank": _ROLLOUT_VLLM,
    "vllm_pipeline_parallel_size": _VLLM_ENGINE,
    "vllm_data_parallel_size": _VLLM_ENGINE,
    "vllm_enable_expert_parallel": _VLLM_ENGINE,
    "vllm_max_num_seqs": _VLLM_ENGINE + " (--max_batch_size caps deploy's batches)",
    "vllm_disable_custom_all_reduce": _VLLM_ENGINE,
    "vllm_enforce_eager": _VLLM_ENGINE,
    "vllm_mm_processor_cache_gb": _VLLM_IMAGES,
    "vllm_speculative_config": _VLLM_ENGINE,
    "vllm_disable_cascade_attn": _VLLM_ENGINE,
    "vllm_limit_mm_per_prompt": _VLLM_IMAGES,
    "vllm_quantization": _VLLM_ENGINE + "; pre-quantized checkpoints load as they are",
    "vllm_enable_prefix_caching": _VLLM_ENGINE,
    "vllm_use_async_engine": _VLLM_ENGINE,
    "vllm_reasoning_parser": _VLLM_ENGINE,
    "vllm_engine_kwargs": _VLLM_ENGINE,
    **dict.fromkeys(("tensor_parallel_size", "gpu_memory_utilization"),
                    "rlhf spells these --vllm_tensor_parallel_size and --vllm_gpu_memory_utilization (grpo "
                    "--vllm_mode colocate); `swiftkit rollout` takes both names"),
    **{f"sglang_{name}": _OTHER_ENGINE for name in (
        "tp_size", "pp_size", "dp_size", "ep_size", "enable_ep_moe", "mem_fraction_static", "context_length",
        "disable_cuda_graph", "quantization", "kv_cache_dtype", "enable_dp_attention", "disable_custom_all_reduce",
        "speculative_algorithm", "speculative_num_steps", "speculative_eagle_topk", "speculative_num_draft_tokens")},
    **{f"lmdeploy_{name}": _OTHER_ENGINE for name in (
        "tp", "session_len", "cache_max_entry_count", "quant_policy", "vision_batch_size")},
    # -- infer / deploy / eval -----------------------------------------------------------------
    "merge_lora": "a training run writes adapters; merge them afterwards with `swiftkit export --adapters RUN`",
    "result_path": "an infer flag (batch mode: one JSON line per --val_dataset row)",
    "max_batch_size": "an infer/eval/deploy flag (prompts generated together)",
    "write_batch_size": ("results are written as each batch of --max_batch_size rows finishes, to a temporary file "
                         "renamed when complete"),
    "metric": "replies are not scored while inferring: `swiftkit eval --eval_dataset qa` scores them against "
              "references",
    **dict.fromkeys(("host", "port", "served_model_name"),
                    "a deploy flag: eval loads the model itself (or reaches a running server with --eval_url)"),
    "owned_by": "the OpenAI API's owned_by field is always swiftkit",
    "verbose": "deploy logs one line per request at most; not configurable",
    "log_interval": "throughput is reported per request; not configurable",
    "ssl_keyfile": "TLS is not built in: serve behind a reverse proxy (nginx, caddy) that terminates HTTPS",
    "ssl_certfile": "TLS is not built in: serve behind a reverse proxy (nginx, caddy) that terminates HTTPS",
    "log_level": "deploy logs one line per request at most; not configurable",
    "max_logprobs": "--max_request_sequences and the request's own top_logprobs bound the work of a request",
    "local_dataset": ("local files are given per benchmark: --eval_dataset NAME=PATH (native layout), or an evalscope "
                      "general_mcq/general_qa folder with --eval_backend evalscope"),
    # -- export --------------------------------------------------------------------------------
    "exist_ok": "export never overwrites: choose a new --output_dir",
    "to_cached_dataset": _CACHED,
    "template_mode": _CACHED,
    "to_mcore": _MEGATRON,
    "to_hf": _MEGATRON,
    "mcore_model": _MEGATRON,
    "mcore_adapter": _MEGATRON,
    "thread_count": _MEGATRON,
    "offload_bridge": _MEGATRON,
    "test_convert_precision": _MEGATRON,
    "test_convert_dtype": _MEGATRON,
    "to_peft_format": "adapters are always written in peft's format",
    "save_missing_weights": "`swiftkit export` writes every weight of the merged model",
}


def field_aliases(cfg_cls) -> dict[str, str]:
    """alias -> field name, for every field of ``cfg_cls``'s groups that declares aliases."""
    out: dict[str, str] = {}
    for _gname, gcls in cfg_cls.groups():
        for f in dataclasses.fields(gcls):
            for alias in f.metadata.get("aliases", ()):
                out[alias] = f.name
    return out


def given_value(values: dict, group_cls, name: str, default=None):
    """The value ``values`` (flat flags, YAML or API keywords) give the field ``name`` of ``group_cls``, under its
    own name or one of its aliases; ``default`` when none is given."""
    field = next(f for f in dataclasses.fields(group_cls) if f.name == name)
    for key in (name, *field.metadata.get("aliases", ())):
        if key in values:
            return values[key]
    return default


def refusal(cfg_cls, key: str) -> ConfigError | None:
    """The error for a refused flag ``key`` of ``cfg_cls``'s command, or None when it is not refused."""
    reason = REFUSED.get(key)
    if reason is None:
        return None
    return ConfigError(f"--{key} is not supported by `swiftkit {cfg_cls.command}`: {reason}")


def flag_status(cfg_cls, key: str) -> tuple[str, str | None]:
    """How ``cfg_cls``'s command takes the flag ``key``: ``("accepted", None)`` (a field of that name),
    ``("renamed", field)`` (an alias), ``("refused", reason)`` or ``("unknown", None)``."""
    if key in cfg_cls.flat_fields():
        return "accepted", None
    alias = field_aliases(cfg_cls).get(key)
    if alias is not None:
        return "renamed", alias
    if key in REFUSED:
        return "refused", REFUSED[key]
    return "unknown", None


def check_spellings(cfg_cls, argv: list[str]) -> None:
    """A flag given on the command line under its name and an alias (``--train_type`` and ``--tuner_type``)
    is an error (argparse would silently keep the last one)."""
    aliases = field_aliases(cfg_cls)
    seen: dict[str, str] = {}
    for arg in argv:
        if not arg.startswith("--"):
            continue
        key = arg[2:].split("=", 1)[0]
        name = aliases.get(key, key)
        if name in seen and seen[name] != key:
            alias = key if key != name else seen[name]
            raise ConfigError(f"flag '--{alias}' is another name of '--{name}'; give only one of them")
        seen[name] = key


def canonical_keys(cfg_cls, values: dict, source: str, extra_names=()) -> dict:
    """``values`` with aliases renamed to their field's name; a key given twice (alias and name) is an
    error, and so is a refused flag. ``extra_names`` are the flags loaded plugins add (never refused)."""
    aliases = field_aliases(cfg_cls)
    fields = cfg_cls.flat_fields()
    out: dict = {}
    for key, value in values.items():
        name = aliases.get(key, key)
        if name != key and name in values:
            raise ConfigError(f"{source} {key!r} is another name of {name!r}; give only one of them")
        if name == key and key not in fields and key not in extra_names:
            refused = refusal(cfg_cls, key)
            if refused is not None:
                raise refused
        out[name] = value
    return out
