"""``--dry_run``: what a training run would do, worked out without its weights and without a run folder.

The recipes call these steps after the data, template and training parts are resolved and before
any weights load. The model is built from its ``config.json`` on the meta device (shapes and dtypes
only) and gets the run's real tuner (``steps.apply_tuner``), so parameter counts are those of the
run; the activation peak is traced on fake tensors (:mod:`swiftkit.train.estimate_trace`); the
tokenizer and the data are the run's own. :func:`training_plan` returns the plan as a dict, which
``run()`` returns; :func:`show` prints it (:mod:`swiftkit.recipes.dryrun_report`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import resource
import sys
from pathlib import Path

from swiftkit.config.tuners import LORA_LIKE
from swiftkit.core import allocator
from swiftkit.core.errors import ConfigError
from swiftkit.models import resolve_dtype
from swiftkit.models.loading import with_model_class
from swiftkit.models.quantization import effective_quantization
from swiftkit.recipes import dryrun_data, rlhf_models, steps
from swiftkit.recipes.dryrun_report import render
from swiftkit.train import estimate
from swiftkit.train.errors import TrainError
from swiftkit.train.estimate_memory import WeightsOnDisk, analytic_activations, peak_memory
from swiftkit.train.estimate_trace import TraceBatch, activation_peak
from swiftkit.train.llamapro import decoder_layers
from swiftkit.train.tuners_peft import linear_layers

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
PLAIN_INITS = ("true", "false", "gaussian")  # LoRA initialisations that need neither the weights nor data


def resident_bytes() -> int:
    """This process's resident memory now (Linux ``/proc/self/statm``; elsewhere its peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


# -- the model, from its config ------------------------------------------------------------------


def meta_model(resolved, cfg, *, scalar_head: bool = False):
    """``(config, model)``: the model class the run loads, built from ``config.json`` on the meta
    device in --torch_dtype. No weight file is opened."""
    import torch  # defers torch
    from transformers import AutoConfig  # defers transformers

    remote = cfg.model.trust_remote_code
    gguf = {"gguf_file": resolved.gguf_file} if resolved.gguf_file else {}  # --model X.gguf
    config = AutoConfig.from_pretrained(resolved.path, trust_remote_code=remote, **gguf)
    kw = dict(dtype=resolve_dtype(cfg.model.torch_dtype), trust_remote_code=remote)
    if scalar_head:
        config.num_labels = 1
    with torch.device("meta"):
        return config, with_model_class(lambda auto: auto.from_config(config, **kw), scalar_head=scalar_head)


def _analytic_lora(model, cfg, targets: list[str]) -> list[tuple[str, int]]:
    """``(module, adapter parameters)`` LoRA would add: r x (in + out) per adapted linear layer
    (plus out for DoRA's magnitude), every linear layer but the head for all-linear."""
    rank, dora = cfg.tuner.lora_rank, cfg.tuner.use_dora
    out = []
    for name, module in linear_layers(model):
        leaf = name.rsplit(".", 1)[-1]
        if targets == ["all-linear"] or leaf in targets or name in targets:
            out.append((name, rank * (module.in_features + module.out_features) + (module.out_features if dora else 0)))
    return out


def _analytic_llamapro(model, cfg) -> list[tuple[str, int]]:
    """``(what, parameters)`` LLaMA-Pro adds: --llamapro_num_new_blocks copies of a decoder block."""
    try:
        block = getattr(*decoder_layers(model))[0]
    except TrainError:  # no list of decoder layers
        return []
    return [("new decoder blocks", cfg.tuner.llamapro_num_new_blocks * sum(p.numel() for p in block.parameters()))]


def tuned_meta_model(host, cfg, model, targets: list[str]) -> tuple[object, str]:
    """``(model, how it was counted)``: --train_type's tuner applied to the meta model. LoRA
    initialisations that read the weights or data (PiSSA, OLoRA, LoftQ, EVA, CorDA) are applied as the
    default one: the adapters' shapes are the same. A tuner that cannot run on meta tensors is counted
    with the LoRA formula (LoRA variants) or leaves every parameter trainable (any other)."""
    t = cfg.tuner
    how = "exact: the tuner applied to the model on the meta device"
    if t.train_type in LORA_LIKE and t.init_weights not in PLAIN_INITS:
        # these read the weights or training rows; the adapters' shapes do not depend on them
        cfg = dataclasses.replace(cfg, tuner=dataclasses.replace(t, init_weights="true"))
        how += f" (with --init_weights true: {t.init_weights} reads the weights, and gives the same shapes)"
    try:
        return steps.apply_tuner(host, cfg, model, targets), how
    except (TrainError, ConfigError):
        raise  # the real run fails the same way: say so now
    except Exception as exc:  # noqa: BLE001 - any failure on meta tensors falls back to counting
        why = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    counted = t.train_type in (*LORA_LIKE, "llamapro")
    for param in model.parameters():
        param.requires_grad_(not counted)
    if counted:
        formula = "LLaMA-Pro: new copies of a decoder block" if t.train_type == "llamapro" else "LoRA formula"
        return model, f"analytic {formula} (the tuner cannot run on meta tensors: {why})"
    return model, f"unknown: the tuner cannot run on meta tensors ({why}); every parameter counted as trainable"


def continued_adapter(model, ckpt: Path):
    """The adapter of ``rlhf --adapters`` on the meta model, from its adapter_config.json (its weights
    are not read): the shapes training continues."""
    from peft import PeftConfig, get_peft_model  # defers peft

    config = PeftConfig.from_pretrained(str(ckpt))
    config.inference_mode = False  # the run continues training it (peft's is_trainable)
    return get_peft_model(model, config)


def count_with_tuner(host, cfg, resolved, targets: list[str], *, scalar_head: bool = False,
                     adapter_ckpt: Path | None = None) -> dict:
    """Build the meta model, apply the tuner (or the adapter training continues), count. Returns
    ``{"config", "model", "count", "counted"}``."""
    config, model = meta_model(resolved, cfg, scalar_head=scalar_head)
    base_names = estimate.base_parameter_names(model)
    steps.enable_recompute(model, cfg.training)
    kind = cfg.tuner.train_type
    extra = (_analytic_lora(model, cfg, targets) if kind in LORA_LIKE
             else _analytic_llamapro(model, cfg) if kind == "llamapro" else [])
    if adapter_ckpt is not None:
        model, how = continued_adapter(model, adapter_ckpt), f"exact: the adapter of {adapter_ckpt} (its config)"
    else:
        model, how = tuned_meta_model(host, cfg, model, targets)
    count = estimate.count_parameters(model, base_names)
    if how.startswith("analytic"):  # LoRA adapters are float32 (peft's); new blocks are in --torch_dtype
        itemsize = 4 if kind in LORA_LIKE else resolve_dtype(cfg.model.torch_dtype).itemsize
        for name, numel in extra:
            count.params.append(estimate.ParamInfo(name, "adapters", numel, (numel,), itemsize, True, True))
            count.groups["adapters"]["total"] += numel
            count.groups["adapters"]["trainable"] += numel
    return {"config": config, "model": model, "count": count, "counted": how}


def weights_on_disk(path: str, config, count: estimate.ParameterCount, load_dtype) -> WeightsOnDisk:
    """The checkpoint's size from its file sizes (files are not opened), or parameters x the
    config's dtype when the weight files are not there."""
    files = [p for p in Path(path).iterdir() if p.suffix in WEIGHT_SUFFIXES and p.name != "training_args.bin"]
    file_dtype = resolve_dtype(str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32")
                          .replace("torch.", ""))
    safetensors = all(p.suffix == ".safetensors" for p in files)
    same = safetensors and file_dtype == load_dtype
    if files:
        return WeightsOnDisk(sum(p.stat().st_size for p in files), same, True)
    itemsize = file_dtype.itemsize
    return WeightsOnDisk(sum(p.numel for p in count.params if not p.new) * itemsize, same, False)


# -- memory --------------------------------------------------------------------------------------


def train_device() -> str:
    """Where the trainer puts the model: the CUDA GPU when there is one, else the CPU."""
    import torch  # defers torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _label_only(cfg, model) -> bool:
    """Whether the default trainer computes logits only at labelled positions for this run."""
    tr = cfg.training
    if tr.loss_type or tr.metric or tr.trainer != "default":
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def _autocast_dtype(cfg):
    import torch  # defers torch

    tr = cfg.training
    return torch.bfloat16 if tr.bf16 else torch.float16 if tr.fp16 else None


def _trace(cfg, counted: dict, batch: TraceBatch, device: str, *, label_only: bool, scalar_head: bool):
    """``(trace, how)``: the traced activation peak, or the analytic one when tracing fails."""
    config = counted["config"]
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab = int(getattr(text, "vocab_size", 2) or 2)
    try:
        trace = activation_peak(counted["model"], batch, device=device, autocast_dtype=_autocast_dtype(cfg),
                                label_only=label_only, scalar_head=scalar_head, vocab_size=vocab)
        return trace, "traced on fake tensors (one forward, loss and backward pass)"
    except Exception as exc:  # noqa: BLE001 - any model code that cannot run on fake tensors
        why = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    itemsize = resolve_dtype(cfg.model.torch_dtype).itemsize
    act = analytic_activations(
        layers=int(getattr(text, "num_hidden_layers", 1) or 1), hidden=hidden,
        intermediate=int(getattr(text, "intermediate_size", 0) or 4 * hidden), tokens=batch.rows * batch.width,
        logits_tokens=batch.rows * (batch.labelled or batch.width), vocab=vocab, itemsize=itemsize,
        checkpointing=cfg.training.recompute == "full")
    grads = estimate.gradient_bytes(counted["count"])
    return ({"peak": act + grads, "gradients_at_peak": grads, "peak_without_gradients": act},
            f"analytic (the model could not be traced on fake tensors: {why})")


def memory_plan(cfg, resolved, counted: dict, batch: TraceBatch, *, scalar_head: bool = False,
                frozen_copies: int = 0) -> dict:
    """The estimated peak memory of the run and its parts (see :func:`peak_memory`).
    ``frozen_copies`` counts extra full copies of the base weights the method keeps (a reference)."""
    import torch  # defers torch

    count = counted["count"]
    quant = effective_quantization(cfg.quant, cfg.tuner.train_type)
    load_dtype = resolve_dtype(cfg.model.torch_dtype)
    weights = estimate.weight_bytes(count, quant)
    weights["frozen_copies"] = frozen_copies * weights["base"]
    disk = weights_on_disk(resolved.path, counted["config"], count, load_dtype)
    trainable = [p for p in count.params if p.trainable]
    o = cfg.optim
    states, states_how, assumed = estimate.optimizer_state_bytes(
        o.optim, trainable, optim_args=o.optim_args, optimizer=cfg.effective_optimizer, galore_rank=o.galore_rank)
    device = train_device()
    runtime = resident_bytes()  # before the trace: what the run's process holds when its weights start to load
    label_only = _label_only(cfg, counted["model"]) and not scalar_head
    trace, trace_how = _trace(cfg, counted, batch, device, label_only=label_only, scalar_head=scalar_head)
    quantized = [p.numel for p in count.params if p.name in estimate.quantized_names(count)] if quant else []
    dequant = 2 * max(quantized) * load_dtype.itemsize if quantized else 0
    workspace = estimate.optimizer_step_workspace(o.optim, cfg.effective_optimizer, trainable)
    memory = peak_memory(
        device=device, runtime=runtime, weights=weights, disk=disk, quant=quant,
        gradients=estimate.gradient_bytes(count), optimizer_states=states, step_workspace=workspace, trace=trace,
        accumulation=cfg.training.gradient_accumulation_steps, checkpointing=cfg.training.recompute != "none",
        dequant_workspace=dequant)
    memory["how"].update(optimizer_states=states_how, trace=trace_how)
    memory.update(dtype=str(load_dtype).replace("torch.", ""), quantization=quant, optimizer_assumed=assumed,
                  checkpoint_bytes=disk.bytes, checkpoint_size_from="files" if disk.measured else "config",
                  batch={"rows": batch.rows, "width": batch.width, "logits_positions": batch.labelled if label_only
                         else batch.width, "sequences": sum(len(s) for s in batch.segments) if batch.segments
                         else batch.rows},
                  autocast=str(_autocast_dtype(cfg)).replace("torch.", "") if _autocast_dtype(cfg) else None,
                  recompute=cfg.training.recompute, threads=torch.get_num_threads())
    if quant:
        memory["weights_quantized"] = {"params": weights["quantized_params"],
                                       "full_precision_params": weights["full_precision_params"]}
    return memory


# -- the plan ------------------------------------------------------------------------------------


def _model_part(cfg, resolved, template, counted: dict) -> dict:
    config = counted["config"]
    return {"model": cfg.model.model, "path": resolved.path, "model_type": resolved.model_type,
            "architecture": (getattr(config, "architectures", None) or [type(counted["model"]).__name__])[0],
            "template": template.name, "max_length": template.max_length, "train_type": cfg.tuner.train_type,
            "counted": counted["counted"]}


def sft_plan(host, cfg, *, command: str, resolved, template, rows, train_data, val_data, too_long: int,
             run_plan, vision: bool = False) -> dict:
    """The dry-run plan of an ``sft``/``pt`` run (see the module docstring). ``vision``: rows with images (padded
    batches; the token counts include the images' tokens)."""
    targets = run_plan.target_modules or list(cfg.tuner.target_modules)
    counted = count_with_tuner(host, cfg, resolved, targets)
    tr = cfg.training
    packing, padding_free = (False, False) if vision else (tr.packing, tr.padding_free and not tr.packing)
    data, encoded = dryrun_data.sft_data(cfg, rows, train_data, val_data, template, too_long)
    schedule, batch = dryrun_data.sft_schedule_and_batch(cfg, encoded, template, packing=packing,
                                                         padding_free=padding_free)
    memory = memory_plan(cfg, resolved, counted, batch)
    notes = []
    if packing or padding_free:
        notes.append(f"{'--packing' if packing else '--padding_free'} assumed exact for this model: a probe checks "
                     "it when the weights load, and the run falls back to padded batches if not")
    if vision:
        notes.append("rows with images: token counts include the images' tokens; the memory trace runs the text "
                     "tokens alone (the vision tower's activations are not in it)")
    data.update(packing=packing, padding_free=padding_free)
    return _finish(command, cfg, _model_part(cfg, resolved, template, counted), counted, data, schedule, memory,
                   notes)


def rlhf_plan(host, cfg, *, method: str, resolved, template, rows, train_data, val_data, too_long: int,
              run_plan, adapter_ckpt) -> dict:
    """The dry-run plan of an ``rlhf`` run. The reference model counts when it is a frozen copy of the
    starting weights; --ref_model, reward and value models are not counted (a note says so)."""
    scalar = method == "rm"
    targets = run_plan.target_modules or list(cfg.tuner.target_modules)
    counted = count_with_tuner(host, cfg, resolved, targets, scalar_head=scalar, adapter_ckpt=adapter_ckpt)
    data, schedule, batch = dryrun_data.rlhf_data_and_batch(cfg, method, rows, train_data, val_data, template,
                                                            too_long)
    adapters = cfg.tuner.train_type not in ("full", "freeze")
    copies = int(rlhf_models.uses_reference_copy(method, "lora" if adapters else cfg.tuner.train_type, cfg))
    memory = memory_plan(cfg, resolved, counted, batch, scalar_head=scalar, frozen_copies=copies)
    notes = [f"--rlhf_type {method}: activations traced for {batch.rows} sequences of up to {batch.width} tokens, "
             + ("a score for each" if scalar else "with logits at every position")]
    if copies:
        notes.append("the reference model is a frozen copy of the starting weights: counted in the weights")
    if cfg.rlhf.ref_model:
        notes.append(f"--ref_model {cfg.rlhf.ref_model}: its weights are not counted")
    if method == "ppo" or (method == "grpo" and cfg.rlhf.reward_model):
        notes.append("reward and value models are not counted")
    if method in ("grpo", "ppo"):
        notes.append("memory for generating replies (the KV cache) is not counted")
    model = _model_part(cfg, resolved, template, counted)
    model["rlhf_type"] = method
    return _finish("rlhf", cfg, model, counted, data, schedule, memory, notes)


def _finish(command: str, cfg, model: dict, counted: dict, data: dict, schedule: dict, memory: dict,
            notes: list) -> dict:
    if memory.get("optimizer_assumed"):
        notes.append(memory["how"]["optimizer_states"])
    if not counted["counted"].startswith("exact"):
        notes.append(f"parameter counts: {counted['counted']}")
    return {"dry_run": True, "command": command, "model": model, "parameters": counted["count"].as_dict(),
            "data": data, "schedule": schedule, "memory": memory, "notes": notes,
            "allocator": allocator.current(), "output_dir": cfg.training.output_dir}


def show(plan: dict) -> None:
    """Print the plan for people (stdout) and as one JSON line (stderr, like a run's result line)."""
    print(render(plan), flush=True)
    steps.log(f"dry run: {json.dumps(plan, ensure_ascii=False, default=str)}")
