"""Field groups that command configs are composed from: model, template, data, tuner, training.

Every field carries its help text in ``metadata["help"]``; the CLI turns fields into flags with that
help. ``__post_init__`` only validates one group (no I/O, no environment, no patches); rules that
involve several groups live in the command configs (:mod:`swiftkit.config.commands`). Groups are
frozen: a validated config is never changed; values derived while a command runs go into its
plan. Field names are unique across the groups of a command (a test checks), so each is one flat
``--flag`` and one key in ``args.json``. The inference-side groups are in
:mod:`swiftkit.config.inference`, the alignment ones in :mod:`swiftkit.config.rlhf`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Optional

from swiftkit.config.columns import check_columns
from swiftkit.config.engines import engine_config
from swiftkit.core.errors import ConfigError
from swiftkit.core.registry import closest


def arg(default, help: str, **kw):
    """A dataclass field with help text (lists get a default_factory)."""
    if isinstance(default, list):
        value = list(default)
        return field(default_factory=lambda: list(value), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def json_object(text: str, flag: str, example: str) -> dict:
    """A flag's JSON text parsed into a dict; errors name the flag and show an example."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} is not valid JSON: {exc.msg} (column {exc.colno})") from exc
    except RecursionError as exc:  # the standard parser recurses once per nesting level
        raise ConfigError(f"{flag} is nested too deeply to parse") from exc
    _check(isinstance(value, dict), f"{flag} must be a JSON object such as '{example}'")
    return value


# transformers' schedules (its SchedulerType; a test checks this list against it).
TRANSFORMERS_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
    "warmup_stable_decay", "greedy",
)
EVAL_DRIVEN_SCHEDULERS = ("reduce_lr_on_plateau", "greedy")  # step on evaluation metrics
MIN_LR_SCHEDULERS = ("cosine_with_min_lr", "cosine_warmup_with_min_lr")
DEFAULT_MIN_LR_RATE = 0.1
# Nothing is recomputed by default: on the 2-core CPU, SmolLM2 LoRA (benchmarks/sft_vs_trl.py, 30 steps)
# trained at 105 tokens/s and 4.9 GiB keeping everything, 81-82 tokens/s at 3.2 GiB (selective) and
# 2.6 GiB (full); see swiftkit.train.recompute.
DEFAULT_RECOMPUTE = "none"
# --max_row_bytes: 16 MiB is 4x the text of a 1M-token context (about 4 bytes a token) and leaves room
# for a few inline base64 images, while one row then costs at most ~5x that while it is read and
# checked; a file that is one giant line (no newlines, a mislabelled dump) fails fast instead.
DEFAULT_MAX_ROW_BYTES = 16 * 1024 * 1024
# --report_to: the trackers swiftkit drives itself (swiftkit/train/trackers.py), plus all and none.
TRACKERS = ("tensorboard", "wandb", "swanlab", "mlflow")
REPORT_TO = (*TRACKERS, "all", "none")


@dataclass(frozen=True)
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
    attn_impl: Optional[Literal["sdpa", "eager", "flash_attn", "flash_attention_2", "flash_attention_3",
                                "flash_attention_4", "flex_attention"]] = arg(
        None, "Attention implementation passed to transformers (default: its choice, sdpa where supported); "
        "flash_attention_2/3/4 need a CUDA GPU and the flash-attn package (flash_attn means flash_attention_2).",
    )
    num_threads: int = arg(
        1,
        "CPU threads for torch. 1 is the safe default on small shared machines (2 threads under "
        "contention measured 5x slower); 0 keeps torch's own choice.",
    )

    def __post_init__(self):
        _check(self.num_threads >= 0, "--num_threads must be >= 0")


@dataclass(frozen=True)
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
    enable_thinking: Optional[bool] = arg(
        None, "Passed to chat templates that take it (Qwen3 and others): false renders replies without a "
        "thinking block. Default: the template's own default.",
    )
    loss_scale: Literal["default", "last_round", "all"] = arg(
        "default",
        "Which tokens get loss: default = every assistant reply (+ its end-of-turn token), "
        "last_round = only the final reply, all = every token. A message with \"loss\": false "
        "is never trained on.",
    )

    def __post_init__(self):
        _check(self.max_length > 0, "--max_length must be > 0")


@dataclass(frozen=True)
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
        '\'{"q": "query", "a": "response"}\'; null drops a column. A YAML config may give it as a mapping.',
        json_object=True,
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
    max_row_bytes: int = arg(
        DEFAULT_MAX_ROW_BYTES,
        "Largest row accepted, in bytes of its JSON text (a JSON line, a .json list item, a CSV record, a "
        "parquet or hub row); a larger row is a bad row naming its file:line and size (see --skip_bad_rows). "
        "JSON lines over it are never read whole. 0 turns the limit off.",
    )
    load_data_args: bool = arg(
        False, "Take --dataset/--val_dataset (and their data flags) from the args.json of the checkpoint being "
        "resumed or the --adapters run, when not given.",
    )
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
        _check(self.max_row_bytes >= 0, f"--max_row_bytes must be >= 0 (0: no limit), got {self.max_row_bytes}")
        _check(not (self.streaming and self.lazy_tokenize),
               "--streaming already tokenizes lazily; drop --lazy_tokenize")
        if self.columns:
            check_columns(json_object(self.columns, "--columns", '{"q": "query"}'), "--columns")
        _check(len(self.model_name) <= 2, "--model_name takes one or two values (Chinese, English)")
        _check(len(self.model_author) <= 2, "--model_author takes one or two values")


@dataclass(frozen=True)
class TrainingArgs:
    output_dir: str = arg("output", "Runs are written to OUTPUT_DIR/v{N}-{timestamp}/.")
    num_train_epochs: float = arg(1.0, "Epochs over the training data (ignored when --max_steps > 0).")
    max_steps: int = arg(-1, "Total optimizer steps; -1 trains for --num_train_epochs.")
    learning_rate: float = arg(1e-4, "Peak learning rate.")
    lr_scheduler_type: str = arg(
        "cosine", "Learning-rate schedule: " + ", ".join(TRANSFORMERS_SCHEDULERS) + " (transformers'; "
        "reduce_lr_on_plateau and greedy need evaluation data; warmup_stable_decay needs "
        "num_decay_steps in --lr_scheduler_kwargs; cosine_with_min_lr and cosine_warmup_with_min_lr "
        "decay to min_lr_rate 0.1 of the peak unless min_lr or min_lr_rate is given), or a plugin's."
    )
    lr_scheduler_kwargs: Optional[str] = arg(
        None, 'JSON object of extra arguments for the schedule, e.g. \'{"min_lr_rate": 0.05}\' or '
        '\'{"num_decay_steps": 100}\' (scheduler_specific_kwargs of transformers\' get_scheduler). A YAML '
        "config may give it as a mapping.",
        json_object=True,
    )
    warmup_ratio: float = arg(0.0, "Fraction of steps for linear warm-up.")
    weight_decay: float = arg(0.1, "AdamW weight decay.")
    max_grad_norm: float = arg(1.0, "Gradient clipping norm.")
    per_device_train_batch_size: int = arg(1, "Rows per training batch.")
    per_device_eval_batch_size: int = arg(1, "Rows per evaluation batch.")
    gradient_accumulation_steps: int = arg(1, "Batches accumulated per optimizer step.")
    gradient_checkpointing: Optional[bool] = arg(
        None, "true: recompute whole decoder layers in backward (--recompute_granularity full); false: recompute "
        "nothing (none). Default: --recompute_granularity's default.",
    )
    recompute_granularity: Optional[Literal["selective", "full", "none"]] = arg(
        None, "Activations recomputed in backward instead of kept: selective (the cheap elementwise ones; the large "
        "matrix products and attention outputs are kept), full (whole decoder layers; least memory, one more "
        "forward) or none. Default: none, or what --gradient_checkpointing says.",
    )
    gradient_checkpointing_kwargs: Optional[str] = arg(
        None, 'JSON object of gradient checkpointing options, e.g. \'{"use_reentrant": false}\' (the default).',
        json_object=True,
    )
    bf16: Optional[bool] = arg(
        None, "bfloat16 mixed precision (autocast; weights stay in --torch_dtype). Default: off on CPU, on with "
        "a CUDA GPU that supports it. On a CPU without bfloat16 instructions (avx512_bf16/amx_bf16) torch emulates "
        "them, slower than float32; the run says so.",
    )
    fp16: Optional[bool] = arg(None, "float16 mixed precision with loss scaling (CUDA GPUs).")
    padding_free: bool = arg(
        True,
        "Pack each batch into one row with position_ids instead of padding (same loss, no compute "
        "on pad tokens; measured ~2x faster on CPU).",
    )
    use_liger_kernel: bool = arg(
        False, "Liger's Triton kernels for the model's RMSNorm, RoPE, SwiGLU and cross-entropy (CUDA GPU and the "
        "liger-kernel package; refused in one line elsewhere).",
    )
    packing: bool = arg(
        False, "Bin-pack tokenized samples into rows of up to --max_length tokens before batching "
        "(fewer, fuller rows; samples never attend to each other)."
    )
    save_strategy: Literal["steps", "epoch", "no", "best"] = arg(
        "steps", "When to save checkpoints: every --save_steps, every epoch, never (the final model is still "
        "written), or best (when --metric_for_best_model improves).",
    )
    save_steps: int = arg(500, "Save a checkpoint every N steps (and at the end).")
    save_only_model: bool = arg(
        False, "Checkpoints hold the weights only (no optimizer, scheduler or RNG state): smaller, but a run "
        "resumed from one does not continue exactly.",
    )
    save_total_limit: Optional[int] = arg(None, "Keep at most N checkpoints (oldest deleted).")
    eval_strategy: Optional[Literal["steps", "epoch", "no"]] = arg(
        None, "When to evaluate: steps (every --eval_steps), epoch, or no (default: steps when there is "
        "evaluation data). Alias: --evaluation_strategy.",
        aliases=("evaluation_strategy",),
    )
    eval_steps: Optional[int] = arg(None, "Evaluate every N steps (default: --save_steps).")
    logging_steps: int = arg(5, "Log loss/lr every N steps.")
    seed: int = arg(42, "Random seed for model init and training.")
    resume_from_checkpoint: Optional[str] = arg(
        None, "Checkpoint directory to continue from (weights, optimizer, scheduler, RNG, step)."
    )
    loss_type: Optional[str] = arg(None, "Loss function by name (a plugin's); default: the model's own.")
    metric: Optional[str] = arg(
        None, "Evaluation metric by name: acc (token accuracy), rouge-l (alias rouge), bleu, nlg (both; these score "
        "generated replies, see --predict_with_generate), or a plugin's. Alias: --eval_metric.",
        aliases=("eval_metric",),
    )
    optimizer: Optional[str] = arg(None, "Optimizer by name (a plugin's); default: AdamW.")
    callbacks: list[str] = arg(
        [], "Extra trainer callbacks by name: early_stop, neftune, graceful_exit, perf_log, save_best, or a "
        "plugin's.",
    )
    trainer: str = arg(
        "default",
        "Trainer by name (a plugin's); default is transformers.Trainer computing the LM head only "
        "where a label is.",
    )
    report_to: list[str] = arg(
        ["tensorboard"], "Experiment trackers: tensorboard, wandb, swanlab, mlflow, all (those installed) or none. "
        "Each logs loss, learning rate, grad norm and eval metrics per optimizer step, args.json as the run's "
        "config, and args.json + manifest.json as files, under the run folder (see --tracker_mode).",
    )
    tracker_mode: Literal["offline", "online"] = arg(
        "offline", "offline: --report_to trackers write only under the run folder (upload later with `wandb sync` / "
        "`swanlab sync`); online: wandb and swanlab also upload as you are logged in (`wandb login`, `swanlab "
        "login`) and mlflow logs to the tracking server MLflow is set to. tensorboard is always local.",
    )
    tracker_project: str = arg(
        "swiftkit", "Project (wandb, swanlab) or experiment (mlflow) the --report_to runs go under; each run is named "
        "after its run folder.",
    )
    dataloader_num_workers: int = arg(0, "DataLoader worker processes.")
    dataloader_drop_last: bool = arg(False, "Drop the last incomplete batch of each epoch.")
    ddp_timeout: int = arg(
        1800, "Distributed runs: seconds a rank waits for the others at a collective before the run fails "
        "(a rank that died or hangs ends the run after this long)."
    )
    ddp_backend: Optional[Literal["gloo", "nccl", "mpi", "ccl", "xccl", "hccl"]] = arg(
        None, "Distributed runs: the process-group backend. Default: nccl on CUDA GPUs, gloo on the CPU."
    )
    deepspeed: Optional[str] = arg(
        None, "DeepSpeed ZeRO: a shipped preset (zero0, zero1, zero2, zero3, zero2_offload, zero3_offload) or a "
        "DeepSpeed JSON config file; launch several ranks with NPROC_PER_NODE (see docs/distributed.md). Needs "
        "swiftkit[deepspeed].",
    )
    fsdp: Optional[str] = arg(
        None, "FSDP2 through transformers/accelerate: a shipped preset (fsdp2, fsdp2_shard_grad_op, fsdp2_offload) "
        "or a JSON file of transformers' fsdp_config; checkpoints are saved whole.",
    )
    sequence_parallel_size: int = arg(
        1, "Sequence parallelism (DeepSpeed's Ulysses/ALST, through accelerate): each sequence is split over this "
        "many ranks, which exchange attention heads; needs --deepspeed and NPROC_PER_NODE x NNODES a multiple of it.",
    )
    dry_run: bool = arg(
        False, "Resolve model (config only), data, template and tuner; print trainable/total parameters per "
        "module group, the estimated peak memory, tokens per step and steps per epoch; then exit without "
        "loading weights or writing a run folder.",
    )

    def __post_init__(self):
        _check(self.learning_rate > 0, "--learning_rate must be > 0")
        _check(0.0 <= self.warmup_ratio < 1.0, "--warmup_ratio must be in [0, 1)")
        _check(self.per_device_train_batch_size > 0, "--per_device_train_batch_size must be > 0")
        _check(self.gradient_accumulation_steps > 0, "--gradient_accumulation_steps must be > 0")
        _check(self.save_steps > 0, "--save_steps must be > 0")
        _check(self.logging_steps > 0, "--logging_steps must be > 0")
        _check(self.ddp_timeout > 0, "--ddp_timeout must be > 0 (seconds)")
        _check(not (self.deepspeed and self.fsdp), "--deepspeed and --fsdp exclude each other: pick one engine")
        if self.deepspeed:
            engine_config(self.deepspeed, "--deepspeed")
        _check(self.sequence_parallel_size >= 1, "--sequence_parallel_size must be >= 1")
        _check(self.sequence_parallel_size == 1 or self.deepspeed, "--sequence_parallel_size runs on DeepSpeed's "
               "Ulysses sequence parallelism: add --deepspeed (zero1, zero2 or zero3)")
        if self.fsdp:
            engine_config(self.fsdp, "--fsdp")
        _check(not (self.bf16 and self.fp16), "--bf16 and --fp16 exclude each other")
        if self.gradient_checkpointing_kwargs:
            flag = "--gradient_checkpointing_kwargs"
            options = json_object(self.gradient_checkpointing_kwargs, flag, '{"use_reentrant": false}')
            _check(self.recompute != "none", f"{flag} applies with --gradient_checkpointing true or "
                   "--recompute_granularity selective/full")
            _check(self.recompute != "selective" or not options.get("use_reentrant"),
                   f'{flag}: --recompute_granularity selective needs "use_reentrant": false')
        if self.recompute_granularity is not None and self.gradient_checkpointing is not None:
            implied = "full" if self.gradient_checkpointing else "none"
            _check(self.recompute_granularity == implied,
                   f"--gradient_checkpointing {str(self.gradient_checkpointing).lower()} means --recompute_granularity "
                   f"{implied}, not {self.recompute_granularity}: give one of the two")
        for name in self.report_to:
            _check(name in REPORT_TO,
                   f"unknown --report_to {name!r}{closest(name, REPORT_TO)}; valid: {', '.join(REPORT_TO)}")
        _check("none" not in self.report_to or len(self.report_to) == 1,
               f"--report_to none cannot be combined with trackers (got: {' '.join(self.report_to)})")
        _check(self.max_steps > 0 or self.num_train_epochs > 0, "set --max_steps or --num_train_epochs > 0")
        kwargs = self.scheduler_kwargs  # parses --lr_scheduler_kwargs
        if self.lr_scheduler_type == "warmup_stable_decay":
            _check("num_decay_steps" in kwargs, "--lr_scheduler_type warmup_stable_decay needs the "
                   "length of its decay: --lr_scheduler_kwargs '{\"num_decay_steps\": N}'")

    @property
    def recompute(self) -> str:
        """The --recompute_granularity in effect (see :mod:`swiftkit.train.recompute`)."""
        if self.recompute_granularity is not None:
            return self.recompute_granularity
        if self.gradient_checkpointing is not None:
            return "full" if self.gradient_checkpointing else "none"
        return DEFAULT_RECOMPUTE

    @property
    def plugin_schedule(self) -> bool:
        """Whether --lr_scheduler_type names a plugin's schedule (not one of transformers')."""
        return self.lr_scheduler_type not in TRANSFORMERS_SCHEDULERS

    @property
    def scheduler_kwargs(self) -> dict:
        """--lr_scheduler_kwargs parsed, plus the documented default of the min-lr schedules."""
        kwargs = json_object(self.lr_scheduler_kwargs, "--lr_scheduler_kwargs", '{"min_lr_rate": 0.05}') \
            if self.lr_scheduler_kwargs else {}
        if self.lr_scheduler_type in MIN_LR_SCHEDULERS and not {"min_lr", "min_lr_rate"} & set(kwargs):
            kwargs["min_lr_rate"] = DEFAULT_MIN_LR_RATE
        return kwargs


@dataclass(frozen=True)
class PluginArgs:
    plugins: list[str] = arg([], "Local plugin files (.py) to load besides installed ones. Aliases: --external_plugins "
                             "(and ms-swift 3.x's --custom_register_path).",
                             aliases=("external_plugins", "custom_register_path"))
    disable_plugins: list[str] = arg([], "Plugin names (entry-point names) not to load.")
