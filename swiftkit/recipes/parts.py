"""The parts of a training run chosen by name, and the trainer arguments every training recipe shares.

Loss, metrics, callbacks (those named in ``--callbacks`` and those flags switch on), the trainer class,
the optimizer and the schedule are resolved through their choice hooks before any weights load, so a
typo costs nothing; :func:`training_arguments` maps the config onto ``transformers.TrainingArguments``
(TRL's configs extend the same class). Plain functions, shared by the sibling recipes like
:mod:`swiftkit.recipes.steps`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from swiftkit.config.engines import engine_config, shards_parameters
from swiftkit.core.choices import check_name, choose, choose_from
from swiftkit.core.errors import ConfigError
from swiftkit.models.attention import attention_implementation, check_liger
from swiftkit.models.quantization import effective_quantization
from swiftkit.train.callback_setup import training_overrides
from swiftkit.train.optim_names import check_optim_flags
from swiftkit.train.optimizers import optimizer_name
from swiftkit.train.precision import cpu_bf16_notice, mixed_precision
from swiftkit.train.tuners_peft import MUTATING_INITS, init_kind


@dataclass
class TrainingParts:
    """Loss, metrics, callbacks and trainer class chosen by name, and who supplied the loss."""

    loss: object = None
    loss_label: str = "the model's own cross-entropy"
    metrics: object = None
    callbacks: list = dataclasses.field(default_factory=list)
    trainer_cls: type | None = None


def choose_training_parts(host, cfg, *, trainer: bool = True, loss: bool = True) -> TrainingParts:
    """Resolve every part selected by name before weights load, so a typo costs nothing: loss,
    metrics, callbacks, the trainer, and (checked by name; built later) the optimizer and schedule."""
    from swiftkit.train.guards import GuardedCallback, guarded_loss  # defers transformers

    tr, parts = cfg.training, TrainingParts()
    if tr.loss_type and loss:  # rlhf: --loss_type is the method's variant (config.dpo_losses, config.grpo_loss)
        choice = choose_from(host, "loss", tr.loss_type, config=cfg)
        parts.loss = guarded_loss(choice.value, host, choice.plugin, tr.loss_type)
        parts.loss_label = f"--loss_type {tr.loss_type} from {choice.label}"
    if cfg.callback.predict_with_generate and cfg.command != "sft":
        raise ConfigError(f"--predict_with_generate scores replies to --val_dataset conversations in `swiftkit sft`; "
                          f"`swiftkit {cfg.command}` does not take it")
    if cfg.callback.predict_with_generate and not tr.metric:
        raise ConfigError("--predict_with_generate scores generated replies with --metric: add --metric rouge-l "
                          "(or bleu, nlg, a plugin's)")
    if tr.metric:
        parts.metrics = choose(host, "metrics", tr.metric, config=cfg)
    for name in callback_names(cfg):
        choice = choose_from(host, "callback", name, config=cfg)
        parts.callbacks.append(GuardedCallback(choice.value, host, choice.plugin, name))
    if cfg.effective_optimizer:
        check_name(host, "optimizer", cfg.effective_optimizer)
    check_optim_flags(cfg)  # --optim's name, what it needs on this machine, and that it fits --optimizer
    check_engine(cfg)  # --deepspeed / --fsdp: installed, and with what they can shard
    mixed_precision(tr.bf16, tr.fp16)  # --bf16/--fp16 the device cannot run fail now
    notice = cpu_bf16_notice(tr.bf16)
    if notice:
        print(f"[swiftkit] {notice}", file=sys.stderr)
    attention_implementation(cfg.model.attn_impl)  # so does an --attn_impl kernel it lacks
    check_liger(tr.use_liger_kernel)  # and --use_liger_kernel without a CUDA GPU or the package
    if tr.plugin_schedule:  # built on a throw-away optimizer: an unknown name fails now
        import torch  # defers torch

        probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        choose(host, "lr_scheduler", tr.lr_scheduler_type, optimizer=probe, num_training_steps=1, config=cfg)
    if trainer:
        from swiftkit.train.trainer import SwiftTrainer  # defers transformers

        parts.trainer_cls = choose(host, "trainer", tr.trainer, config=cfg)
        if tr.plugin_schedule and not issubclass(parts.trainer_cls, SwiftTrainer):
            raise ConfigError(f"--lr_scheduler_type {tr.lr_scheduler_type} is a plugin's schedule, which swiftkit's "
                              f"trainer builds; the trainer of --trainer {tr.trainer} does not derive from it")
    return parts


def check_engine(cfg) -> None:
    """--deepspeed needs its package; a sharded engine takes the trainer's own optimizer (built after the model is
    wrapped), and ZeRO-3/FSDP (parameters sharded) no quantized base and no LISA (which switches layers' training
    on and off while the engine holds them)."""
    tr = cfg.training
    flag = f"--deepspeed {tr.deepspeed}" if tr.deepspeed else f"--fsdp {tr.fsdp}" if tr.fsdp else None
    if flag is None:
        return
    if tr.deepspeed and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"{flag} needs the deepspeed package: pip install 'swiftkit[deepspeed]'")
    if tr.sequence_parallel_size > 1:
        import torch  # defers torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--sequence_parallel_size {tr.sequence_parallel_size} runs DeepSpeed's Ulysses on CUDA "
                              "GPUs: on the CPU, accelerate runs DeepSpeed's ranks as plain data parallelism and does "
                              "not hand each sequence-parallel group the same batch; this machine has no CUDA GPU")
    chosen = optimizer_name(cfg)
    if chosen:
        raise ConfigError(f"{flag}: the engine builds the optimizer around the parameters it shards, from --optim; "
                          f"--optimizer {chosen} builds its own around whole parameters. Drop one of them")
    rollouts = getattr(cfg, "vllm_rollout", None)
    sharded = shards_parameters(tr)  # reads the engine's JSON
    if sharded and rollouts is not None and rollouts.use_vllm and rollouts.vllm_mode == "server":
        raise ConfigError(f"{flag} shards the weights, and --vllm_mode server pushes the weights each rank holds "
                          "whole: use --deepspeed zero2 (or DDP) with a rollout server")
    if sharded and effective_quantization(cfg.quant, cfg.tuner.train_type) is not None:
        raise ConfigError(f"{flag} shards the parameters, and a 4/8-bit quantized base cannot be sharded here: use "
                          "--deepspeed zero2 (or DDP) with QLoRA")
    rlhf = getattr(cfg, "rlhf", None)
    if rlhf is not None and rlhf.rlhf_type == "ppo":
        raise ConfigError(f"{flag}: PPO trains its value model beside the policy, outside the engine's sharded "
                          "model; PPO runs on several ranks with DDP (NPROC_PER_NODE=N without --deepspeed/--fsdp)")
    if cfg.optim.lisa_activated_layers > 0:
        raise ConfigError(f"{flag}: LISA (--lisa_activated_layers) switches layers' training on and off during the "
                          "run, which the engine's sharded optimizer cannot follow; train with DDP")


def callback_names(cfg) -> list[str]:
    """``--callbacks``, plus the built-in callbacks that flags switch on (each once, in that order)."""
    names = list(cfg.training.callbacks)
    implied = {"early_stop": cfg.callback.early_stop_interval is not None,
               "neftune": cfg.callback.neftune_noise_alpha is not None,
               "save_best": cfg.callback.load_best_model_at_end,
               "lisa": cfg.optim.lisa_activated_layers > 0,
               # tuners that act while training (swiftkit.train.tuner_callbacks)
               "adalora": cfg.tuner.train_type == "adalora",
               "adapter_conversion": cfg.tuner.train_type in ("lora", "qlora")
               and init_kind(cfg.tuner.init_weights) in MUTATING_INITS}
    names += [name for name, on in implied.items() if on and name not in names]
    return names


def build_optimizer(host, cfg, model):
    """``--optimizer``'s optimizer for ``model`` (also for the --optim names a built-in one builds, such as
    galore_adamw); None: the trainer's own, from --optim."""
    name = optimizer_name(cfg)
    return choose(host, "optimizer", name, model=model, config=cfg) if name else None


def scheduler_factory(host, cfg):
    """For ``SwiftTrainer.scheduler_factory``: a plugin's schedule by name (None for transformers' own)."""
    name = cfg.training.lr_scheduler_type
    if not cfg.training.plugin_schedule:
        return None

    def factory(optimizer, num_training_steps):
        return choose(host, "lr_scheduler", name, optimizer=optimizer, num_training_steps=num_training_steps,
                      config=cfg)

    return factory


def engine_arguments(training) -> dict:
    """TrainingArguments' ``deepspeed`` or ``fsdp``/``fsdp_config`` for --deepspeed / --fsdp (nothing for DDP)."""
    if training.deepspeed:
        out = {"deepspeed": engine_config(training.deepspeed, "--deepspeed")}
        if training.sequence_parallel_size > 1:
            from accelerate.parallelism_config import ParallelismConfig  # defers accelerate
            from accelerate.utils import DeepSpeedSequenceParallelConfig  # defers accelerate

            handler = DeepSpeedSequenceParallelConfig(sp_seq_length_is_variable=True)  # attention: EngineSetup
            out["parallelism_config"] = ParallelismConfig(
                sp_backend="deepspeed", sp_size=training.sequence_parallel_size, sp_handler=handler)
        return out
    if training.fsdp:
        return {"fsdp": True, "fsdp_config": engine_config(training.fsdp, "--fsdp")}
    return {}


def training_arguments(cfg, run_dir: Path, *, has_val: bool) -> dict:
    """The TrainingArguments fields every training recipe shares (TRL's configs extend the same class)."""
    tr, opt, cb = cfg.training, cfg.optim, cfg.callback
    eval_strategy = (tr.eval_strategy or "steps") if has_val else "no"
    args = dict(
        output_dir=str(run_dir),
        num_train_epochs=tr.num_train_epochs,
        max_steps=tr.max_steps,
        learning_rate=tr.learning_rate,
        # A plugin's schedule is built by the scheduler factory; transformers only needs a valid name.
        lr_scheduler_type="constant" if tr.plugin_schedule else tr.lr_scheduler_type,
        lr_scheduler_kwargs={} if tr.plugin_schedule else tr.scheduler_kwargs,
        warmup_steps=tr.warmup_ratio,  # transformers 5: a float below 1 is a ratio of all steps
        weight_decay=tr.weight_decay,
        max_grad_norm=tr.max_grad_norm,
        per_device_train_batch_size=tr.per_device_train_batch_size,
        per_device_eval_batch_size=tr.per_device_eval_batch_size,
        gradient_accumulation_steps=tr.gradient_accumulation_steps,
        optim=opt.optim,
        optim_args=opt.optim_args,
        adam_beta1=opt.adam_beta1,
        adam_beta2=opt.adam_beta2,
        adam_epsilon=opt.adam_epsilon,
        save_strategy=tr.save_strategy,
        save_steps=tr.save_steps,
        save_total_limit=tr.save_total_limit,
        save_only_model=tr.save_only_model,
        eval_strategy=eval_strategy,
        eval_steps=(tr.eval_steps or tr.save_steps) if eval_strategy == "steps" else None,
        load_best_model_at_end=cb.load_best_model_at_end,
        # --save_strategy best compares eval loss unless --metric_for_best_model names another metric
        metric_for_best_model=cb.metric_for_best_model or ("loss" if tr.save_strategy == "best" else None),
        greater_is_better=cb.greater_is_better,
        neftune_noise_alpha=cb.neftune_noise_alpha,
        **mixed_precision(tr.bf16, tr.fp16),  # bf16, fp16 and use_cpu for this machine
        ddp_timeout=tr.ddp_timeout,
        ddp_backend=tr.ddp_backend,
        **engine_arguments(tr),  # --deepspeed / --fsdp
        logging_steps=tr.logging_steps,
        logging_first_step=True,
        seed=tr.seed,
        data_seed=cfg.data.data_seed,
        report_to="none",  # --report_to: swiftkit's own tracker callbacks (tracker_callbacks below)
        dataloader_num_workers=tr.dataloader_num_workers,
        dataloader_drop_last=tr.dataloader_drop_last,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
    )
    return {**args, **training_overrides(cfg)}  # save_best aligns saves with evaluations; neftune is a callback


def tracker_callbacks(cfg) -> list:
    """``--report_to``'s tracker callbacks (swiftkit drives the trackers, so transformers gets "none"),
    each tracker's package imported now, before any weights load. ``--callbacks mlflow`` (the
    swiftkit-mlflow plugin) also logs to MLflow: with it, ``--report_to mlflow`` is refused and ``all``
    leaves mlflow out, so no metric is logged twice."""
    from swiftkit.train.trackers import tracker_callbacks as build  # defers transformers

    tr = cfg.training
    if "mlflow" in tr.report_to and "mlflow" in tr.callbacks:
        raise ConfigError("--report_to mlflow and --callbacks mlflow both log the run to MLflow: keep one (--report_to "
                          "mlflow: a store in the run folder; --callbacks mlflow: wherever --mlflow_tracking_uri says)")
    return build(tr, excluded=("mlflow",) if "mlflow" in tr.callbacks else ())
