"""Plain step functions the training recipes share: each takes inputs and returns outputs.

``sft``/``pt`` and ``rlhf`` are sibling recipes; what they do alike is here, called from their
``setup()`` in order. Nothing here keeps state between calls or changes a config: derived values
are returned (and the recipe records them in its :class:`~swiftkit.recipes.records.RunPlan`).

torch, transformers and peft are imported inside the functions that need them (they are heavy and
``swiftkit --help`` must not pay for them).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from swiftkit.config.engines import engine_name, shards_parameters, zero_stage
from swiftkit.config.training_parts import gradient_checkpointing_options
from swiftkit.core import distributed
from swiftkit.core.checkpoints import checkpoint_step, last_complete, read_train_args, resolve_resume
from swiftkit.core.choices import choose
from swiftkit.core.distributed import ONE_RANK, Ranks
from swiftkit.core.io import OutputError, discard_unstarted_run, new_run_dir, write_json, write_problem
from swiftkit.data import data_fingerprint, load_rows, split_rows
from swiftkit.data.loader import LoadReport
from swiftkit.data.media import has_media
from swiftkit.data.vision import VisionEncoder
from swiftkit.models import is_vision_checkpoint, load_model, load_processor
from swiftkit.models.attention import apply_liger
from swiftkit.models.quantization import (
    bnb_config,
    effective_quantization,
    keep_4bit_trainable_on_cpu,
    release_checkpoint_mapping,
)
from swiftkit.models.segment_attention import use_segment_sdpa
from swiftkit.recipes.records import RunPlan
from swiftkit.train.collate import make_collator
from swiftkit.train.errors import TrainError
from swiftkit.train.recompute import checkpoint_kwargs
from swiftkit.train.tuners import ADAPTER_TUNERS, check_before_loading
from swiftkit.train.tuners_peft import DATA_INITS, MUTATING_INITS, corda_preprocess, eva_initialise, init_kind


def log(message: str) -> None:
    """One line on stderr (from rank 0 alone in a distributed run)."""
    if distributed.ranks().main:
        print(f"[swiftkit] {message}", file=sys.stderr)


def join_ranks(training) -> Ranks:
    """This process's place in the run; several processes (a launcher started them) join one process
    group now, before anything is written, with --ddp_timeout and --ddp_backend. --deepspeed and --fsdp
    need a process group even on one rank: a process no launcher started becomes rank 0 of one."""
    if training.deepspeed or training.fsdp:
        distributed.lone_rank()
    place = distributed.join(training.ddp_timeout, training.ddp_backend)
    if training.sequence_parallel_size > 1:  # Ulysses sets up its groups through DeepSpeed's own communicator
        import deepspeed  # defers deepspeed

        deepspeed.init_distributed(timeout=timedelta(seconds=training.ddp_timeout))
    return place


# -- start ---------------------------------------------------------------------------------------


def resume_point(cfg) -> tuple[Path | None, dict]:
    """``--resume_from_checkpoint``: the checkpoint, and the settings its args.json supplies that the
    user did not give (the model)."""
    path = cfg.training.resume_from_checkpoint
    if not path:
        return None, {}
    ckpt = resolve_resume(path)
    done = checkpoint_step(ckpt)
    max_steps = cfg.training.max_steps
    if max_steps > 0 and done is not None and done >= max_steps:
        # transformers would run one more optimizer step before it noticed (and write checkpoint-N+1)
        raise TrainError(f"--resume_from_checkpoint {ckpt} is at step {done}, and --max_steps is {max_steps}: nothing "
                         f"is left to train; raise --max_steps to train on")
    _check_world_size(ckpt, cfg.training)
    optimizer_files = ("optimizer.pt", "optimizer.bin", "global_step*")  # DDP, FSDP, DeepSpeed
    if not any(any(ckpt.glob(name)) for name in optimizer_files):
        log(f"--resume_from_checkpoint {ckpt.name} holds the weights only (saved with --save_only_model): training "
            "continues from its step with a new optimizer state, learning-rate schedule and RNG, so it does not "
            "continue exactly as the interrupted run would have")
    if cfg.model.model:
        return ckpt, {}
    args, _ = read_train_args(ckpt)
    if args is None or not args.get("model"):
        raise TrainError(f"{ckpt.parent / 'args.json'} is missing: pass --model with --resume_from_checkpoint")
    return ckpt, {"model": args["model"]}


def _check_world_size(ckpt: Path, training) -> None:
    """A run resumes on as many ranks as it trained on (its manifest says; one when it does not): the
    global batch, the data each rank reads and the saved RNG states all depend on that number. So does
    the engine: a DeepSpeed checkpoint holds its ZeRO stage's own optimizer shards, an FSDP one its own."""
    try:
        trained = json.loads((ckpt.parent / "manifest.json").read_text())["distributed"]
        trained = {"world_size": trained["world_size"], "engine": trained.get("engine"),
                   "zero_stage": trained.get("zero_stage")}
    except (OSError, ValueError, KeyError, TypeError):
        trained = {"world_size": 1, "engine": None, "zero_stage": None}
    now = distributed.ranks().world_size
    if trained["world_size"] != now:
        raise TrainError(f"--resume_from_checkpoint {ckpt}: the run trained on {trained['world_size']} rank(s) and "
                         f"this one has {now}; resume with NPROC_PER_NODE x NNODES = {trained['world_size']}, or "
                         "start a new run from its weights (--model for full weights, rlhf --adapters for LoRA)")
    engine = engine_name(training)
    stage = zero_stage(training)
    was = trained["engine"] if trained["engine"] in ("deepspeed", "fsdp2") else None
    if (was, trained["zero_stage"] if was == "deepspeed" else None) != (engine, stage):
        def name(kind, zero):
            return {"deepspeed": f"DeepSpeed ZeRO-{zero}", "fsdp2": "FSDP2"}.get(kind, "DDP")

        raise TrainError(f"--resume_from_checkpoint {ckpt}: the run trained with {name(was, trained['zero_stage'])} "
                         f"and this one asks for {name(engine, stage)}; its optimizer state is saved in that "
                         "engine's layout: resume with the same --deepspeed/--fsdp, or start a new run from its "
                         "weights")


def resume_data_args(cfg):
    """``(config, inherited)``: with --load_data_args and --resume_from_checkpoint, the data flags not given
    (--dataset, --val_dataset, --split_dataset_ratio, ...) taken from the resumed run's args.json."""
    if not (cfg.data.load_data_args and cfg.training.resume_from_checkpoint):
        return cfg, {}
    ckpt = resolve_resume(cfg.training.resume_from_checkpoint)
    args, _ = read_train_args(ckpt)
    if args is None:
        raise TrainError(f"{ckpt.parent / 'args.json'} is missing, so --load_data_args has no data flags to take; "
                         "pass --dataset")
    cfg, inherited = cfg.with_data_args(args)
    log(f"--load_data_args: took {', '.join(f'--{k}' for k in inherited) or 'nothing (all given)'} from {ckpt}")
    return cfg, inherited


def with_settings(group, settings: dict):
    """A copy of a config group with the ``settings`` it has fields for (the validated one is kept)."""
    names = {f.name for f in dataclasses.fields(group)}
    return dataclasses.replace(group, **{k: v for k, v in settings.items() if k in names})


# -- data ----------------------------------------------------------------------------------------


@dataclass
class TrainingRows:
    train: list[dict] | None  # None with --streaming: read while training
    val: list[dict]
    bad_rows_skipped: int


def data_options(cfg, *, text_only: bool = False, convert=None) -> dict:
    """The keyword arguments of ``load_rows`` / ``stream_rows`` for a training config's data flags."""
    d = cfg.data
    options = dict(seed=d.data_seed, model_name=tuple(d.model_name), model_author=tuple(d.model_author),
                   use_hf=cfg.model.use_hf, cache_dir=cfg.model.cache_dir, text_only=text_only,
                   columns=d.column_map, skip_bad_rows=d.skip_bad_rows, max_row_bytes=d.max_row_bytes)
    if convert is not None:
        options["convert"] = convert
    return options


def load_training_rows(cfg, registries, options: dict) -> TrainingRows:
    """``--dataset`` and ``--val_dataset`` rows (the split when --split_dataset_ratio); every bad
    row is reported now, before any weights load."""
    d = cfg.data
    report, val_report = LoadReport(), LoadReport()
    train = None if d.streaming else load_rows(d.dataset, registries=registries, report=report, **options)
    val = load_rows(d.val_dataset, registries=registries, report=val_report, **options) if d.val_dataset else []
    for what, rep in (("--dataset", report), ("--val_dataset", val_report)):
        if rep.skipped:
            log(f"--skip_bad_rows: {what}: {rep.summary()}")
    skipped = len(report.skipped) + len(val_report.skipped)
    if train is not None and not d.val_dataset and d.split_dataset_ratio > 0:
        train, val = split_rows(train, d.split_dataset_ratio, seed=d.data_seed)
    return TrainingRows(train, val, skipped)


def rows_fingerprint(rows: TrainingRows, cfg) -> str:
    """The data fingerprint of a run; a stream is not read ahead, so its fingerprint covers the specs."""
    train = rows.train if rows.train is not None else [{"streaming": list(cfg.data.dataset)}]
    return data_fingerprint(train + rows.val)


def report_too_long(train_skipped: int, val_skipped: int, template) -> None:
    if train_skipped or val_skipped:
        log(f"skipped {train_skipped} training and {val_skipped} validation rows longer than --max_length "
            f"{template.max_length}")


# -- model ---------------------------------------------------------------------------------------


def lora_targets(tuner, resolved) -> list[str]:
    """The LoRA targets to apply: --target_modules, or the registry's for the model type when the
    flag was left at all-linear (some architectures need named modules)."""
    entry = resolved.entry
    if list(tuner.target_modules) == ["all-linear"] and entry is not None and entry.lora_target_modules:
        log(f"model type {entry.type}: LoRA on {', '.join(entry.lora_target_modules)}")
        return list(entry.lora_target_modules)
    return list(tuner.target_modules)


def vision_encoder(resolved, cfg, template, row_lists):
    """The encoder of rows with images (:class:`~swiftkit.data.vision.VisionEncoder`: the template plus the
    model's processor), or None when no row has one. Images need a vision-language model; --packing and
    --padding_free, which join rows, are refused with them when given (each row keeps its own pixel
    features; --padding_free, on by default, is turned off)."""
    first = next((row for rows in row_lists if rows for row in rows if has_media(row)), None)
    if first is None:
        return None
    where = first.get("_origin", "--dataset")
    what = next(key for key in ("images", "videos", "audios") if first.get(key))
    if not is_vision_checkpoint(resolved):
        raise TrainError(f"{where}: the row has {what}, but {resolved.path} is a text model (its config.json has no "
                         "vision_config): train on a vision-language model (swiftkit list models --tag vision)")
    training = cfg.training
    joined = [flag for flag in ("packing", "padding_free") if getattr(training, flag) and cfg.is_given(flag)]
    if joined:
        raise TrainError(f"--{joined[0]} joins rows into one sequence, and rows with {what} ({where}) keep their own "
                         "pixel features: train them in padded batches (drop the flag)")
    processor = load_processor(resolved, trust_remote_code=cfg.model.trust_remote_code)
    log(f"rows with images: the model's processor ({type(processor).__name__}) puts in the images' tokens")
    return VisionEncoder(template, processor)


def load_weights(resolved, model_args, seed: int, *, scalar_head: bool = False, quantization: dict | None = None,
                 liger: bool = False, vision: bool = False):
    """The base model's weights, with the seed set first (a tuner initialises adapters after this).
    ``quantization`` (:func:`~swiftkit.models.quantization.effective_quantization`) loads it 4/8-bit
    through bitsandbytes (QLoRA); --attn_impl picks the attention implementation; ``liger`` (--use_liger_kernel,
    checked by the plan) swaps in Liger's kernels."""
    from transformers import set_seed  # defers transformers

    set_seed(seed)
    if quantization is not None:
        log(f"loading the base {quantization['quant_bits']}-bit ({quantization['quant_method']}) for QLoRA")
    try:
        model = load_model(resolved, torch_dtype=model_args.torch_dtype, trust_remote_code=model_args.trust_remote_code,
                           scalar_head=scalar_head, attn_implementation=model_args.attn_impl,
                           quantization_config=bnb_config(quantization, model_args.torch_dtype), vision=vision)
        if quantization is not None:
            keep_4bit_trainable_on_cpu(model)
            release_checkpoint_mapping(model)
        if liger:
            apply_liger(model)
        use_segment_sdpa(model)  # padding-free rows: SDPA per packed sequence on the CPU (same attention)
        return model
    except ImportError as exc:
        if quantization is None:
            raise
        raise TrainError(f"--quant_method bnb needs bitsandbytes: pip install 'swiftkit[qlora]' ({exc})") from exc
    except ValueError as exc:
        if scalar_head and "Unrecognized configuration class" in str(exc):
            raise TrainError(f"transformers has no sequence-classification class for {resolved.path} (a reward "
                             f"model needs one): {exc}") from exc
        raise


def enable_recompute(model, training) -> None:
    """Set up --recompute_granularity (with --gradient_checkpointing_kwargs) on ``model``; a model without
    transformers' gradient checkpointing keeps every activation (logged)."""
    options = gradient_checkpointing_options(training.gradient_checkpointing_kwargs)
    kwargs = checkpoint_kwargs(training.recompute, options)
    if kwargs is None:
        return
    if not getattr(model, "supports_gradient_checkpointing", False):
        log(f"--recompute_granularity {training.recompute}: {type(model).__name__} does not support gradient "
            "checkpointing; keeping every activation")
        return
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.enable_input_require_grads()


def apply_tuner(host, cfg, model, targets: list[str], *, data_pass=None):
    """``--train_type``'s tuner (a plugin's or built in) applied to ``model``, with the LoRA targets
    resolved for this model (the tuner sees them as ``config.tuner.target_modules``).

    ``--init_weights eva/corda`` read training batches: ``data_pass()`` returns them (sft/pt rows);
    corda's pass runs before the tuner, eva's after it."""
    tuned = dataclasses.replace(cfg, tuner=dataclasses.replace(cfg.tuner, target_modules=targets))
    kind = init_kind(cfg.tuner.init_weights) if cfg.tuner.train_type in ("lora", "qlora") else None
    if kind in MUTATING_INITS and cfg.training.resume_from_checkpoint:
        raise TrainError(f"--resume_from_checkpoint: the checkpoints of an --init_weights {cfg.tuner.init_weights} run "
                         "hold the adapter converted for the original base, which cannot continue the run; start a "
                         "new run (e.g. rlhf/sft --adapters CHECKPOINT continues that adapter as plain LoRA)")
    if kind in DATA_INITS and data_pass is None:
        raise TrainError(f"--init_weights {kind} initialises the adapters from a pass over sft/pt training rows; "
                         f"`swiftkit {cfg.command}` has none to give it: use --init_weights true or pissa")
    if kind == "corda":
        corda_preprocess(model, tuned, data_pass())
    model = choose(host, "tuner", cfg.tuner.train_type, model=model, config=tuned)
    if kind == "eva":
        eva_initialise(model, data_pass())
    return lean_activations(model, cfg.training)


def lean_lora_dropout(model):
    """``model`` with the dropout of its plain LoRA layers fused into their A projections (same
    values, a one-byte mask kept per input element instead of two float copies; see
    :mod:`swiftkit.train.lora_dropout`)."""
    from swiftkit.train.lora_dropout import fuse_lora_dropout  # defers torch

    fuse_lora_dropout(model)
    return model


def lean_activations(model, training):
    """``model`` keeping less for backward with the same values: its LoRA dropout fused into A
    (:func:`lean_lora_dropout`) and its SwiGLU MLPs keeping two of their four wide activations (see
    :mod:`swiftkit.train.lean_mlp`) when the step keeps every activation (--recompute_granularity none)
    and Liger's kernels do not replace those MLPs. Not under ZeRO-3 or FSDP: both read weights the engine
    gathers only when their own layer runs forward."""
    from swiftkit.train.lean_mlp import lean_gated_mlps  # defers torch

    if shards_parameters(training):
        return model
    model = lean_lora_dropout(model)
    if training.recompute == "none" and not training.use_liger_kernel:
        lean_gated_mlps(model)
    return model


def init_batches(rows, tokenizer, batch_size: int = 16, limit: int = 64) -> list[dict]:
    """Up to ``limit`` encoded training rows as padded batches, for --init_weights eva/corda."""
    collate = make_collator(tokenizer, padding_free=False, vision=True)  # rows with images keep their features
    picked = [dict(r) for _, r in zip(range(limit), rows)]
    return [dict(collate(picked[i:i + batch_size])) for i in range(0, len(picked), batch_size)]


def new_plan(cfg, *, model_args, resolved, template, rows: TrainingRows, num_train_rows: int | None,
             num_val_rows: int, rows_too_long: int, resume: Path | None, inherited: dict,
             new_adapter: bool = True, **method) -> RunPlan:
    """The plan of a training run as set up so far (packing is added once the model is loaded).
    ``new_adapter`` is False when training continues a trained adapter (its targets are its own)."""
    tr = cfg.training
    check_before_loading(cfg)
    # the adapter tuners' targets (--target_regex, when given, replaces them)
    adapters = cfg.tuner.train_type in ADAPTER_TUNERS and new_adapter and cfg.tuner.target_regex is None
    return RunPlan(
        model=model_args.model, model_path=resolved.path, model_type=resolved.model_type,
        template_name=template.name, num_train_rows=num_train_rows, num_val_rows=num_val_rows,
        rows_too_long=rows_too_long, bad_rows_skipped=rows.bad_rows_skipped,
        rows_per_step=tr.per_device_train_batch_size * tr.gradient_accumulation_steps,
        resume_from=str(resume) if resume else None, inherited=inherited,
        lr_scheduler={"name": tr.lr_scheduler_type, "kwargs": tr.scheduler_kwargs},
        target_modules=lora_targets(cfg.tuner, resolved) if adapters else None, method=method,
        quantization=effective_quantization(cfg.quant, cfg.tuner.train_type),
    )


# -- the run folder ------------------------------------------------------------------------------


@dataclass
class RunFolder:
    """Where a run writes: a new ``v{N}-{timestamp}`` folder, or the resumed run's own."""

    path: Path
    fresh: bool  # created by this run (removed again if the run fails before its first step)
    root_created: bool  # --output_dir did not exist before


def open_run_folder(output_dir: str, resume: Path | None, place: Ranks = ONE_RANK) -> RunFolder:
    """The run's folder. In a distributed run rank 0 makes it and the other ranks learn its name (they
    never remove it)."""
    if resume is not None:
        return RunFolder(resume.parent, fresh=False, root_created=False)
    made = None
    if place.main:
        try:
            root_existed = Path(output_dir).exists()
            made = RunFolder(new_run_dir(output_dir), fresh=True, root_created=not root_existed)
        except OutputError as exc:
            made = exc
    made = distributed.broadcast(made, place)
    if isinstance(made, Exception):
        raise made
    return made if place.main else RunFolder(made.path, fresh=False, root_created=False)


def record_callbacks(run_dir: Path, loss_label: str, plots=None, place: Ranks = ONE_RANK):
    """``(callbacks, counter)``: the callbacks that write the run's records (logging.jsonl with
    real-token counts, plots, args.json per checkpoint), stop it at a non-finite gradient, save the final
    model under --save_strategy no, and keep its checkpoint folders complete or absent (last: a save is
    done once args.json is copied in). In a distributed run every rank counts its tokens and rank 0
    alone writes."""
    from swiftkit.train.callbacks import JsonlLoggingCallback, RunFilesCallback, TokenCounter  # defers transformers
    from swiftkit.train.checkpointing import CheckpointGuard  # defers transformers
    from swiftkit.train.final_save import FinalSave  # defers transformers
    from swiftkit.train.guards import NonFiniteGuard  # defers transformers

    counter = TokenCounter()
    if not place.main:
        return [NonFiniteGuard(loss_label), JsonlLoggingCallback(None, counter, place), FinalSave()], counter
    return [NonFiniteGuard(loss_label), JsonlLoggingCallback(run_dir / "logging.jsonl", counter, place),
            RunFilesCallback(run_dir, plots), FinalSave(), CheckpointGuard(run_dir)], counter


def built_or_discarded(folder: RunFolder, build):
    """``build()``; when it fails, a fresh run folder is removed again (nothing half-made is left)."""
    try:
        return build()
    except BaseException:
        if folder.fresh:
            discard_unstarted_run(folder.path, folder.root_created)
        raise


def close_progress_bars(trainer) -> None:
    """End transformers' progress bars (ProgressCallback's ``training_bar``) so an error message after
    a failed run starts on its own line; the trainer closes them only when training ends normally."""
    for callback in trainer.callback_handler.callbacks:
        bar = getattr(callback, "training_bar", None)
        if bar is not None:
            bar.close()
            callback.training_bar = None


def train(trainer, folder: RunFolder, resume: Path | None, counter) -> dict:
    """Run the trainer and return the result summary (see :func:`finish`).

    When training fails: a checkpoint whose save did not finish is removed (the complete ones stay,
    resumable); a fresh run that fails before its first optimizer step leaves no run folder behind;
    a write the filesystem refused (full disk, read-only) becomes one :class:`OutputError` naming the
    run folder and how to go on."""
    from swiftkit.train.callbacks import peak_rss_mb  # defers transformers
    from swiftkit.train.checkpointing import checkpoint_guard  # defers transformers

    try:
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except BaseException as exc:
        close_progress_bars(trainer)
        problem = write_problem(exc, folder.path)  # before removing anything: a full disk frees up after
        guard = checkpoint_guard(trainer)
        partial = guard.discard_unfinished() if guard is not None else None
        unstarted = folder.fresh and trainer.state.global_step == 0  # only rank 0 made (and removes) the folder
        if unstarted:
            discard_unstarted_run(folder.path, folder.root_created)
        if problem is None:
            raise
        raise OutputError(_write_failed_message(folder, partial, unstarted, problem)) from exc
    found = last_complete(folder.path)
    runtime = output.metrics.get("train_runtime")
    place = distributed.ranks()
    tokens, peaks = zip(*distributed.gathered((counter.tokens, round(peak_rss_mb(), 1)), place))
    result = {
        "run_dir": str(folder.path),
        "last_checkpoint": str(found) if found else None,
        "global_step": output.global_step,
        "train_loss": output.training_loss,
        "train_runtime_s": runtime,
        "train_tokens": sum(tokens),  # all ranks
        "train_tokens_per_s": round(sum(tokens) / runtime, 2) if runtime else None,
        "peak_rss_mb": round(sum(peaks), 1),  # all ranks on this node and the others
        "loss_plot": str(folder.path / "loss.png"),
    }
    if place.distributed:
        result.update(world_size=place.world_size, nnodes=place.nnodes, rank_train_tokens=list(tokens),
                      rank_peak_rss_mb=list(peaks))
    if trainer.state.best_model_checkpoint:  # --metric_for_best_model / save_best
        result.update(best_checkpoint=trainer.state.best_model_checkpoint, best_metric=trainer.state.best_metric)
    return result


def _write_failed_message(folder: RunFolder, partial: Path | None, unstarted: bool, problem: str) -> str:
    where = f"checkpoint {partial.name} of {str(folder.path)!r}" if partial else f"the run folder {str(folder.path)!r}"
    if unstarted:
        then = "the run folder was removed; start the run again"
    else:
        found = last_complete(folder.path)
        saved = f"its last complete checkpoint is {found.name}" if found else "it has no complete checkpoint yet"
        then = (f"{'the incomplete checkpoint was removed; ' if partial else ''}{saved}; continue with "
                f"--resume_from_checkpoint {folder.path}")
    return f"writing {where} failed: {problem}; {then}"


def finish(folder: RunFolder, result: dict) -> dict:
    """Write the run's result summary to ``train_result.json`` and say the run finished (rank 0)."""
    if not distributed.ranks().main:
        return result
    write_json(folder.path / "train_result.json", result)
    log(f"run finished: {json.dumps(result, ensure_ascii=False, default=str)}")
    return result
