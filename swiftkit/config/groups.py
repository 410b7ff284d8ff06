"""Field groups that command configs are composed from.

Every field carries its help text in ``metadata["help"]``; the CLI turns fields into flags with that
help. ``__post_init__`` only validates (no I/O, no environment, no patches). Field names are unique
across groups, so each is one flat ``--flag`` and one key in ``args.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Optional


def arg(default, help: str, **kw):
    """A dataclass field with help text (lists get a default_factory)."""
    if isinstance(default, list):
        value = list(default)
        return field(default_factory=lambda: list(value), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


class ConfigError(ValueError):
    """A config value is invalid; the message names the flag."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class ModelArgs:
    model: Optional[str] = arg(
        None,
        "Model to load: a local directory, a hub id (ModelScope by default, HF hub with --use_hf) "
        "or a registered short name such as smollm2-135m-instruct (`swiftkit list models`).",
    )
    model_type: Optional[str] = arg(
        None, "Registry model type (e.g. qwen2_5; `swiftkit list models --json`) deciding the fallback "
        "template and LoRA targets; inferred from the registry or config.json when unset."
    )
    model_revision: Optional[str] = arg(None, "Hub revision (branch, tag or commit) to download.")
    use_hf: bool = arg(False, "Download from the Hugging Face hub instead of ModelScope.")
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = arg(
        "auto", "Weights dtype; auto is float32 on CPU and bfloat16 (or float16) on GPU."
    )
    trust_remote_code: bool = arg(False, "Allow model code from the hub/model directory to run.")
    cache_dir: Optional[str] = arg(
        None, "Where downloaded and converted models are cached (default ~/.cache/swiftkit)."
    )
    num_threads: int = arg(
        1,
        "CPU threads for torch. 1 is the safe default on small shared machines (2 threads under "
        "contention measured 5x slower); 0 keeps torch's own choice.",
    )

    def __post_init__(self):
        _check(self.num_threads >= 0, "--num_threads must be >= 0")


@dataclass
class TemplateArgs:
    template: Optional[str] = arg(
        None,
        "Registered template name (`swiftkit list templates`). Default: the model's own chat "
        "template, or the model family's registered template when the tokenizer has none.",
    )
    system: Optional[str] = arg(None, "System prompt used for rows that have none.")
    max_length: int = arg(2048, "Maximum tokens per encoded row.")
    truncation_strategy: Literal["delete", "left", "right"] = arg(
        "delete",
        "What to do with rows longer than --max_length: delete drops them (counted in the log), "
        "left/right cut tokens from that side.",
    )
    loss_scale: Literal["default", "last_round", "all"] = arg(
        "default",
        "Which tokens get loss: default = every assistant reply (+ its end-of-turn token), "
        "last_round = only the final reply, all = every token. A message with \"loss\": false "
        "is never trained on.",
    )

    def __post_init__(self):
        _check(self.max_length > 0, "--max_length must be > 0")


@dataclass
class DataArgs:
    dataset: list[str] = arg(
        [],
        "Training data: files (jsonl/json/csv/parquet/txt), registered names or hub ids; "
        "`name#N` samples N rows (repeating when N exceeds the data). Several are mixed.",
    )
    val_dataset: list[str] = arg([], "Validation data, same forms as --dataset.")
    split_dataset_ratio: float = arg(
        0.0, "Fraction of --dataset held out for validation when --val_dataset is not given."
    )
    data_seed: int = arg(42, "Seed for sampling, shuffling and the validation split.")
    model_name: list[str] = arg(
        [],
        "Name the model gives itself in the self-cognition data: one name, or a Chinese and an "
        "English name.",
    )
    model_author: list[str] = arg(
        [], "Author named in the self-cognition data: one name, or a Chinese and an English name."
    )
    columns: Optional[str] = arg(
        None, "JSON object renaming source columns to canonical ones for every dataset, e.g. "
        '\'{"q": "query", "a": "response"}\'; null drops a column.'
    )
    skip_bad_rows: bool = arg(
        False, "Leave out rows that cannot be used (and report how many) instead of refusing to start."
    )
    streaming: bool = arg(
        False, "Read --dataset lazily while training (large corpora); needs --max_steps. No lint pass, "
        "no packing; bad rows stop the run unless --skip_bad_rows."
    )
    dataset_num_proc: int = arg(1, "Processes that tokenize the dataset.")
    lazy_tokenize: bool = arg(False, "Tokenize each row when the trainer first asks for it, not up front.")
    load_from_cache_file: bool = arg(
        True, "Reuse tokenized data cached under ~/.cache/swiftkit/encoded (or <--cache_dir>/encoded), "
        "keyed by the data, template, tokenizer and max length."
    )

    @property
    def column_map(self) -> dict:
        """--columns parsed (validated in __post_init__)."""
        return json.loads(self.columns) if self.columns else {}

    def __post_init__(self):
        _check(0.0 <= self.split_dataset_ratio < 1.0, "--split_dataset_ratio must be in [0, 1)")
        _check(self.dataset_num_proc >= 1, "--dataset_num_proc must be >= 1")
        _check(not (self.streaming and self.lazy_tokenize), "--streaming already tokenizes lazily; drop --lazy_tokenize")
        if self.columns:
            from swiftkit.data.registry import check_columns

            try:
                mapping = json.loads(self.columns)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--columns is not valid JSON: {exc.msg} (column {exc.colno})") from exc
            _check(isinstance(mapping, dict), "--columns must be a JSON object such as '{\"q\": \"query\"}'")
            try:
                check_columns(mapping, "--columns")
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        _check(len(self.model_name) <= 2, "--model_name takes one or two values (Chinese, English)")
        _check(len(self.model_author) <= 2, "--model_author takes one or two values")


@dataclass
class TunerArgs:
    train_type: str = arg(
        "lora",
        "Tuner: lora (adapters, default targets every linear layer), full (all weights), freeze "
        "(only the last --freeze_trainable_layers layers), or one a plugin registers.",
    )
    lora_rank: int = arg(8, "LoRA rank r.")
    lora_alpha: int = arg(32, "LoRA alpha (scale = alpha / rank).")
    lora_dropout: float = arg(0.05, "Dropout on the LoRA path.")
    target_modules: list[str] = arg(
        ["all-linear"], "Modules that get LoRA adapters; all-linear = every linear layer but the head."
    )
    freeze_trainable_layers: int = arg(
        1, "With --train_type freeze: how many of the last decoder layers train (plus the norm)."
    )

    def __post_init__(self):
        _check(self.lora_rank > 0, "--lora_rank must be > 0")
        _check(0.0 <= self.lora_dropout < 1.0, "--lora_dropout must be in [0, 1)")
        _check(self.freeze_trainable_layers >= 0, "--freeze_trainable_layers must be >= 0")


@dataclass
class TrainingArgs:
    output_dir: str = arg("output", "Runs are written to OUTPUT_DIR/v{N}-{timestamp}/.")
    num_train_epochs: float = arg(1.0, "Epochs over the training data (ignored when --max_steps > 0).")
    max_steps: int = arg(-1, "Total optimizer steps; -1 trains for --num_train_epochs.")
    learning_rate: float = arg(1e-4, "Peak learning rate.")
    lr_scheduler_type: str = arg(
        "cosine", "Learning-rate schedule: a plugin's, or any transformers scheduler name."
    )
    warmup_ratio: float = arg(0.0, "Fraction of steps for linear warm-up.")
    weight_decay: float = arg(0.1, "AdamW weight decay.")
    max_grad_norm: float = arg(1.0, "Gradient clipping norm.")
    per_device_train_batch_size: int = arg(1, "Rows per training batch.")
    per_device_eval_batch_size: int = arg(1, "Rows per evaluation batch.")
    gradient_accumulation_steps: int = arg(1, "Batches accumulated per optimizer step.")
    gradient_checkpointing: bool = arg(
        False, "Recompute activations in backward (saves GPU memory, costs ~20-30% time)."
    )
    padding_free: bool = arg(
        True,
        "Pack each batch into one row with position_ids instead of padding (same loss, no compute "
        "on pad tokens; measured ~2x faster on CPU).",
    )
    packing: bool = arg(
        False, "Bin-pack tokenized samples into rows of up to --max_length tokens before batching "
        "(fewer, fuller rows; samples never attend to each other)."
    )
    save_steps: int = arg(500, "Save a checkpoint every N steps (and at the end).")
    save_total_limit: Optional[int] = arg(None, "Keep at most N checkpoints (oldest deleted).")
    eval_steps: Optional[int] = arg(None, "Evaluate every N steps (default: --save_steps).")
    logging_steps: int = arg(5, "Log loss/lr every N steps.")
    seed: int = arg(42, "Random seed for model init and training.")
    resume_from_checkpoint: Optional[str] = arg(
        None, "Checkpoint directory to continue from (weights, optimizer, scheduler, RNG, step)."
    )
    loss_type: Optional[str] = arg(None, "Loss function by name (a plugin's); default: the model's own.")
    metric: Optional[str] = arg(None, "Evaluation metric by name (a plugin's).")
    optimizer: Optional[str] = arg(None, "Optimizer by name (a plugin's); default: AdamW.")
    callbacks: list[str] = arg([], "Extra trainer callbacks by name (plugins').")
    trainer: str = arg(
        "default",
        "Trainer by name (a plugin's); default is transformers.Trainer computing the LM head only "
        "where a label is.",
    )
    report_to: list[str] = arg(["tensorboard"], "Loggers: tensorboard, wandb, none, ...")
    dataloader_num_workers: int = arg(0, "DataLoader worker processes.")

    def __post_init__(self):
        _check(self.learning_rate > 0, "--learning_rate must be > 0")
        _check(0.0 <= self.warmup_ratio < 1.0, "--warmup_ratio must be in [0, 1)")
        _check(self.per_device_train_batch_size > 0, "--per_device_train_batch_size must be > 0")
        _check(self.gradient_accumulation_steps > 0, "--gradient_accumulation_steps must be > 0")
        _check(self.save_steps > 0, "--save_steps must be > 0")
        _check(self.logging_steps > 0, "--logging_steps must be > 0")
        _check(self.max_steps > 0 or self.num_train_epochs > 0, "set --max_steps or --num_train_epochs > 0")


@dataclass
class AdapterArgs:
    adapters: list[str] = arg(
        [], "Trained checkpoints (LoRA adapters, or full weights first); the base model and template "
        "are read from their args.json. A run directory means its last checkpoint."
    )
    merge_lora: bool = arg(False, "Merge the adapters into the base weights after loading.")


@dataclass
class GenerationArgs:
    max_new_tokens: int = arg(512, "Maximum tokens generated per reply.")
    temperature: float = arg(0.0, "Sampling temperature; 0 is greedy decoding.")
    top_p: float = arg(1.0, "Nucleus sampling threshold.")
    top_k: int = arg(50, "Top-k sampling.")
    repetition_penalty: float = arg(1.0, "Penalty for repeated tokens (1.0 = none).")
    stream: bool = arg(False, "Print tokens as they are generated (interactive mode).")
    result_path: Optional[str] = arg(
        None, "Batch mode: write one JSON line per --val_dataset row (default next to the adapters)."
    )
    max_batch_size: int = arg(8, "Batch mode: prompts generated together.")
    infer_backend: str = arg("transformers", "Inference engine, chosen through the swiftkit_get_infer_engine hook (built in: transformers, vllm).")

    def __post_init__(self):
        _check(self.max_new_tokens > 0, "--max_new_tokens must be > 0")
        _check(self.temperature >= 0, "--temperature must be >= 0")
        _check(self.max_batch_size > 0, "--max_batch_size must be > 0")


@dataclass
class DeployArgs:
    host: str = arg("127.0.0.1", "Address the server listens on (0.0.0.0 for every interface).")
    port: int = arg(8000, "TCP port of the server.")
    api_key: Optional[str] = arg(
        None, "When set, every /v1 request needs the header `Authorization: Bearer <api_key>`."
    )
    served_model_name: Optional[str] = arg(
        None, "Model id of the base model in the API (default: the last part of --model's name or path)."
    )
    max_model_len: Optional[int] = arg(
        None, "Most tokens a request may use, prompt plus reply (default: the model's max_position_embeddings)."
    )
    max_body_bytes: int = arg(4 * 1024 * 1024, "Largest request body accepted; larger ones get 413.")
    batch_wait_ms: float = arg(
        5.0, "How long the scheduler waits for more requests to fill a batch (up to --max_batch_size rows)."
    )

    def __post_init__(self):
        _check(0 < self.port < 65536, f"--port must be between 1 and 65535, got {self.port}")
        _check(self.max_model_len is None or self.max_model_len > 0, "--max_model_len must be > 0")
        _check(self.max_body_bytes > 0, "--max_body_bytes must be > 0")
        _check(self.batch_wait_ms >= 0, "--batch_wait_ms must be >= 0")
        _check(self.api_key is None or bool(self.api_key), "--api_key must not be empty")


@dataclass
class PluginArgs:
    plugins: list[str] = arg([], "Local plugin files (.py) to load besides installed ones.")
    disable_plugins: list[str] = arg([], "Plugin names (entry-point names) not to load.")


@dataclass
class EvalArgs:
    eval_dataset: list[str] = arg(
        ["qa"], "Benchmarks to run, chosen through the swiftkit_get_eval_benchmark hook (built in: qa, "
        "which scores the replies to --val_dataset rows against their reference answers)."
    )
    eval_limit: Optional[int] = arg(None, "Score at most this many examples per benchmark.")
    eval_output_dir: str = arg(
        "eval_output", "Where each evaluation writes its folder (metrics.json, samples.jsonl)."
    )

    def __post_init__(self):
        _check(bool(self.eval_dataset), "--eval_dataset needs at least one benchmark name")
        _check(self.eval_limit is None or self.eval_limit > 0, "--eval_limit must be > 0")


@dataclass
class ExportArgs:
    export_format: str = arg(
        "merged", "Output format, chosen through the swiftkit_get_export_format hook (built in: "
        "merged: full safetensors weights with LoRA merged in, loadable by plain transformers)."
    )
    output_dir: Optional[str] = arg(
        None, "Folder to create (must not exist); default: <first adapter>-<format>."
    )


@dataclass
class DataToolArgs:
    max_problems: int = arg(50, "`data lint`: problems printed (all are counted).")
    index: int = arg(0, "`data preview`: which usable row (after loading and sampling) to show.")
    show_tokens: bool = arg(False, "`data preview`: also print one line per token (id, text, trained or not).")
    pretrain: bool = arg(False, "Treat --dataset as pretraining text (rows with 'text'), as `swiftkit pt` does.")
    rlhf_type: Optional[str] = arg(
        None, "`data lint`: check --dataset as `swiftkit rlhf --rlhf_type X` reads it (pairs for dpo/orpo/simpo/"
        "cpo/rm, labelled replies for kto, prompts for ppo/grpo); with --model, both replies of a pair are encoded."
    )

    def __post_init__(self):
        from swiftkit.registry import closest

        _check(self.max_problems >= 0, "--max_problems must be >= 0")
        _check(self.index >= 0, "--index must be >= 0")
        _check(self.rlhf_type is None or self.rlhf_type in RLHF_TYPES,
               f"unknown --rlhf_type {self.rlhf_type!r}{closest(str(self.rlhf_type), RLHF_TYPES)}; valid: "
               f"{', '.join(RLHF_TYPES)}")
        _check(not (self.pretrain and self.rlhf_type), "--pretrain and --rlhf_type exclude each other")


VLLM_MISSING = "--infer_backend vllm needs the vllm package: pip install 'swiftkit[vllm]' (GPU machines only)"


@dataclass
class VllmArgs:
    """Settings of the vLLM engine (``--infer_backend vllm``); the transformers engine ignores them."""

    tensor_parallel_size: int = arg(1, "--infer_backend vllm: GPUs the model is split across (tensor parallel).")
    gpu_memory_utilization: float = arg(
        0.9, "--infer_backend vllm: fraction of each GPU's memory vLLM may take (weights plus KV cache)."
    )
    vllm_max_model_len: Optional[int] = arg(
        None, "--infer_backend vllm: context length (prompt plus reply) vLLM plans its KV cache for "
        "(default: the model's own)."
    )
    vllm_max_lora_rank: int = arg(64, "--infer_backend vllm: the largest LoRA rank an adapter may have.")

    def __post_init__(self):
        _check(self.tensor_parallel_size >= 1, "--tensor_parallel_size must be >= 1")
        _check(0 < self.gpu_memory_utilization <= 1, "--gpu_memory_utilization must be in (0, 1]")
        _check(self.vllm_max_model_len is None or self.vllm_max_model_len > 0, "--vllm_max_model_len must be > 0")
        _check(self.vllm_max_lora_rank >= 1, "--vllm_max_lora_rank must be >= 1")


RLHF_TYPES = ("dpo", "orpo", "simpo", "cpo", "kto", "rm", "ppo", "grpo")
# --beta when it is not given: the value each method's paper (and TRL) starts from.
DEFAULT_BETA = {"dpo": 0.1, "orpo": 0.1, "simpo": 2.0, "cpo": 0.1, "kto": 0.1, "grpo": 0.04, "ppo": 0.05}
GRPO_LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


@dataclass
class RlhfArgs:
    """Settings of `swiftkit rlhf`; each names the methods it applies to."""

    rlhf_type: str = arg(
        "dpo", "Alignment method: dpo, orpo, simpo, cpo, kto (preference or labelled data), rm (a reward "
        "model from preference pairs), ppo (online, needs --reward_model) or grpo (online, needs "
        "--reward_funcs and/or --reward_model)."
    )
    adapters: list[str] = arg(
        [], "A trained LoRA checkpoint (or run directory) to continue from, e.g. an SFT run: it is the starting "
        "policy and the reference; the base model and template come from its args.json."
    )
    beta: Optional[float] = arg(
        None, "dpo/cpo/kto: inverse temperature of the implicit reward; simpo: reward scale; orpo: weight "
        "of the odds-ratio term; grpo/ppo: KL coefficient. Default per method: dpo 0.1, orpo 0.1, "
        "simpo 2.0, cpo 0.1, kto 0.1, grpo 0.04, ppo 0.05."
    )
    ref_model: Optional[str] = arg(
        None, "dpo/kto/grpo/ppo: reference model (path, hub id or registered name). Default: the "
        "trained model's starting point, i.e. the base with adapters disabled under LoRA (no second "
        "copy in memory), a frozen copy under full/freeze."
    )
    precompute_ref_log_probs: bool = arg(
        False, "dpo/kto: compute the reference log-probs of every row once before training; full/freeze "
        "training then keeps no reference copy in memory."
    )
    dpo_loss_type: list[str] = arg(
        ["sigmoid"], "dpo: loss variants (TRL's: sigmoid, hinge, ipo, robust, bco_pair, sppo_hard, "
        "apo_zero, apo_down, discopop, sft, ...); several are summed with --dpo_loss_weights."
    )
    dpo_loss_weights: list[float] = arg([], "dpo: weight of each --dpo_loss_type (default 1 each).")
    label_smoothing: float = arg(0.0, "dpo/cpo: probability that a preference label is flipped (robust/cDPO).")
    rpo_alpha: Optional[float] = arg(
        None, "dpo: add this weight of NLL on the chosen reply (RPO); same as adding the sft loss type."
    )
    simpo_gamma: float = arg(0.5, "simpo: target reward margin gamma.")
    cpo_alpha: Optional[float] = arg(
        None, "cpo/simpo: weight of the NLL term on chosen replies (default: cpo 1.0, simpo 0.0)."
    )
    desirable_weight: float = arg(1.0, "kto: loss weight of desirable (label true) rows.")
    undesirable_weight: float = arg(1.0, "kto: loss weight of undesirable (label false) rows.")
    center_rewards_coefficient: Optional[float] = arg(
        None, "rm: weight of a penalty on the mean reward's square, keeping rewards centred at 0."
    )
    reward_model: Optional[str] = arg(
        None, "ppo (required) / grpo: a reward model (an `rlhf --rlhf_type rm` run or checkpoint, or a "
        "sequence-classification model directory) that scores prompt + reply."
    )
    value_model: Optional[str] = arg(
        None, "ppo: model the value head starts from (default: --reward_model)."
    )
    reward_funcs: list[str] = arg(
        [], "grpo: reward functions by name (`swiftkit list rewards`; plugins add more through "
        "swiftkit_register_reward_funcs). Built in: accuracy, format, length."
    )
    reward_weights: list[float] = arg(
        [], "grpo: weight of each reward (--reward_funcs, then --reward_model); default 1 each."
    )
    format_pattern: str = arg(
        r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$",
        "grpo `format` reward: the regular expression a well-formed reply matches (DOTALL).",
    )
    num_generations: int = arg(4, "grpo: replies sampled per prompt (the group whose rewards are compared).")
    max_completion_length: int = arg(256, "grpo/ppo: most tokens generated per reply.")
    temperature: float = arg(1.0, "grpo/ppo: sampling temperature of the replies.")
    grpo_loss_type: str = arg(
        "dapo", "grpo: how token losses are averaged (TRL's): grpo (per sequence, length-biased), dapo (over "
        "the batch's tokens), dr_grpo (by a constant), bnpo, cispo, sapo, luspo, vespo."
    )
    scale_rewards: str = arg(
        "group", "grpo: divide advantages by the reward std of each group (group), of the batch (batch), or not (none)."
    )
    num_iterations: int = arg(1, "grpo: optimisation passes over each batch of generations (mu).")
    num_ppo_epochs: int = arg(4, "ppo: optimisation passes over each batch of rollouts.")
    cliprange: float = arg(0.2, "ppo/grpo: clip range of the policy ratio (grpo: epsilon).")
    cliprange_value: float = arg(0.2, "ppo: clip range of the value update.")
    vf_coef: float = arg(0.1, "ppo: weight of the value loss.")
    gamma: float = arg(1.0, "ppo: discount factor.")
    lam: float = arg(0.95, "ppo: GAE lambda.")
    missing_eos_penalty: Optional[float] = arg(
        None, "ppo: subtracted from the score of a reply that ends without an end-of-turn token."
    )

    def __post_init__(self):
        from swiftkit.registry import closest

        _check(self.rlhf_type in RLHF_TYPES,
               f"unknown --rlhf_type {self.rlhf_type!r}{closest(self.rlhf_type, RLHF_TYPES)}; valid: "
               f"{', '.join(RLHF_TYPES)}")
        for name in self.dpo_loss_type:
            _check(name in DPO_LOSS_TYPES,
                   f"unknown --dpo_loss_type {name!r}{closest(name, DPO_LOSS_TYPES)}; valid: {', '.join(DPO_LOSS_TYPES)}")
        _check(not self.dpo_loss_weights or len(self.dpo_loss_weights) == len(self.dpo_loss_type),
               f"--dpo_loss_weights has {len(self.dpo_loss_weights)} values for {len(self.dpo_loss_type)} "
               "--dpo_loss_type values")
        _check(self.beta is None or self.beta >= 0, "--beta must be >= 0")
        _check(0.0 <= self.label_smoothing < 0.5, "--label_smoothing must be in [0, 0.5)")
        _check(self.num_generations >= 2, "--num_generations must be >= 2 (GRPO compares replies within a group)")
        _check(self.max_completion_length > 0, "--max_completion_length must be > 0")
        _check(self.temperature > 0, "--temperature must be > 0 (replies are sampled)")
        _check(self.num_ppo_epochs >= 1, "--num_ppo_epochs must be >= 1")
        _check(self.num_iterations >= 1, "--num_iterations must be >= 1")
        _check(self.grpo_loss_type in GRPO_LOSS_TYPES,
               f"unknown --grpo_loss_type {self.grpo_loss_type!r}{closest(self.grpo_loss_type, GRPO_LOSS_TYPES)}; "
               f"valid: {', '.join(GRPO_LOSS_TYPES)}")
        _check(self.scale_rewards in ("group", "batch", "none"), "--scale_rewards must be group, batch or none")
        _check(self.desirable_weight > 0 and self.undesirable_weight > 0,
               "--desirable_weight and --undesirable_weight must be > 0")
        import re

        try:
            re.compile(self.format_pattern)
        except re.error as exc:
            raise ConfigError(f"--format_pattern is not a valid regular expression: {exc}") from exc

    @property
    def beta_value(self) -> float:
        """--beta, or the method's default."""
        return DEFAULT_BETA.get(self.rlhf_type, 0.1) if self.beta is None else self.beta
