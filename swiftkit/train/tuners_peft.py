"""Adapter tuners built on peft: lora/qlora (with DoRA, rsLoRA and peft's initialisations), adalora,
vera, boft, ia3, loha and lokr.

Each ``apply_*`` takes the loaded model and the whole command config and returns a ``PeftModel``
whose ``save_pretrained`` folder loads with plain ``peft.PeftModel.from_pretrained`` on the
unquantized base. A model loaded 4/8-bit (``--quant_method bnb``, ``--train_type qlora``) is first
prepared for k-bit training (peft's ``prepare_model_for_kbit_training``: norms and head in float32,
inputs that carry a gradient). ``--trainable_parameters*`` modules train fully beside the adapters
and are saved with them (peft's ``modules_to_save``), never adapted themselves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from swiftkit.models.quantization import is_quantized, keep_4bit_trainable_on_cpu
from swiftkit.train.errors import TrainError
from swiftkit.train.tuner_params import check_multimodal_flags, frozen_part_modules, trainable_modules

# --init_weights values that move the base weights (W -> W - B0 A0): their checkpoints are converted
# into plain LoRA adapters of twice the rank on save (see swiftkit.train.tuner_callbacks).
MUTATING_INITS = ("pissa", "olora", "loftq", "corda")
# --init_weights values that read training rows first (the recipe runs that pass; see apply_tuner).
DATA_INITS = ("eva", "corda")


def init_kind(init_weights: str) -> str:
    """``pissa_niter_16`` -> ``pissa``; other values unchanged."""
    return "pissa" if init_weights.startswith("pissa") else init_weights


def _has_fused_experts(model) -> bool:
    """Whether some module named ``experts`` holds a 3-D parameter (fused expert weights)."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "experts" and any(p.dim() == 3 for p in module.parameters(recurse=False)):
            return True
    return False


def _is_router(module) -> bool:
    """An MoE router written as a linear layer of the model's own (Llama 4's ``Llama4Router``): its forward
    returns the routing scores and logits, not one tensor, so an adapter cannot wrap it."""
    cls = type(module)
    return cls.__module__.startswith("transformers.models.") and "Router" in cls.__name__


def routers(model) -> list[str]:
    """The names of the model's linear-layer MoE routers (left out of the adapted modules)."""
    return [n for n, m in model.named_modules() if _is_router(m)]


def linear_layers(model) -> list[tuple[str, object]]:
    """``(name, module)`` of every linear layer but the output head and MoE routers: what ``all-linear``
    adapts."""
    import torch  # defers torch

    head = model.get_output_embeddings()
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and m is not head and not _is_router(m)]


def linear_layer_names(model) -> list[str]:
    """The distinct last name parts of :func:`linear_layers` (``q_proj``, ...), sorted: ``all-linear``
    spelled out for code that matches target names as they are given."""
    return sorted({name.rsplit(".", 1)[-1] for name, _ in linear_layers(model)})


def _task_type(model) -> str:
    # A reward/value model's score head is new: SEQ_CLS trains it fully and saves it with the adapter.
    return "SEQ_CLS" if type(model).__name__.endswith("ForSequenceClassification") else "CAUSAL_LM"


def _targets(tuner):
    """peft's ``target_modules``: --target_regex (a string: peft full-matches it) or the module names."""
    if tuner.target_regex is not None:
        return tuner.target_regex
    targets = list(tuner.target_modules)
    return "all-linear" if targets == ["all-linear"] else targets


def _describe_targets(tuner) -> str:
    if tuner.target_regex is not None:
        return f"--target_regex {tuner.target_regex!r}"
    return f"--target_modules {' '.join(tuner.target_modules)}"


def _saved_modules(model, tuner) -> tuple[list[str], list[str]]:
    """``(modules_to_save, exclude_modules)``: --modules_to_save plus the --trainable_parameters*
    modules, which are kept out of the adapted modules (a module trains one way)."""
    extra = trainable_modules(model, tuner)
    # a multimodal model's frozen parts (the vision tower and aligner by default) and MoE routers get no adapters
    return (list(dict.fromkeys([*tuner.modules_to_save, *extra])),
            [*extra, *frozen_part_modules(model, tuner), *routers(model)])


def check_init(tuner, quantized: bool) -> None:
    """--init_weights combinations peft cannot do, as one line each."""
    kind = init_kind(tuner.init_weights)
    if quantized and kind in ("pissa", "olora", "corda", "eva"):
        raise TrainError(f"--init_weights {tuner.init_weights} decomposes full-precision weights; it cannot start "
                         "from a 4/8-bit base: use --init_weights true or loftq with --quant_method bnb")
    if kind == "loftq" and not quantized:
        raise TrainError("--init_weights loftq starts the adapters from the 4-bit quantization error: add "
                         "--quant_method bnb --quant_bits 4 (or use --train_type qlora)")
    if tuner.use_dora and kind in MUTATING_INITS:
        raise TrainError(f"--use_dora with --init_weights {tuner.init_weights}: a DoRA adapter on moved base weights "
                         "cannot be converted back into a portable adapter; drop one of them")


def lora_config(model, config, *, peft_class: str = "LoraConfig", **extra):
    """peft's LoraConfig (or AdaLoraConfig) for the --lora_* / --init_weights flags of ``config``."""
    import peft  # defers peft

    tuner = config.tuner
    dropout = tuner.lora_dropout
    if dropout > 0 and _has_fused_experts(model):
        # transformers 5 keeps MoE experts as fused 3-D parameters; peft adapts those as parameters,
        # which cannot take dropout.
        print(f"[swiftkit] this model's MoE experts are fused parameters: --lora_dropout {dropout} -> 0.0",
              file=sys.stderr)
        dropout = 0.0
    kind = init_kind(tuner.init_weights)
    if kind == "eva":
        extra["eva_config"] = peft.EvaConfig()
    elif kind == "corda":
        from peft.tuners.lora.config import CordaConfig  # defers peft

        extra["corda_config"] = CordaConfig(corda_method="ipm", verbose=False)
    save, exclude = _saved_modules(model, tuner)
    return getattr(peft, peft_class)(
        r=tuner.lora_rank,
        lora_alpha=tuner.lora_alpha,
        lora_dropout=dropout,
        target_modules=_targets(tuner),
        exclude_modules=exclude or None,
        modules_to_save=save or None,
        bias=tuner.lora_bias,
        use_dora=tuner.use_dora,
        use_rslora=tuner.use_rslora,
        # loftq is applied after the model is wrapped (peft's replace_lora_weights_loftq on the 4-bit base)
        init_lora_weights=True if kind == "loftq" else tuner.init_lora_weights,
        task_type=_task_type(model),
        **extra,
    )


def prepare_quantized(model):
    """A 4/8-bit base prepared for k-bit training (peft: norms and head in float32, inputs that carry a
    gradient); any other model unchanged."""
    if is_quantized(model):
        from peft import prepare_model_for_kbit_training  # defers peft

        # Gradient checkpointing, when asked for, was switched on by the recipe before the tuner.
        prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        keep_4bit_trainable_on_cpu(model)
    return model


def _prepare(model, config) -> bool:
    """Checks every adapter tuner shares; prepares a quantized base for k-bit training. Whether it is."""
    check_multimodal_flags(model, config)
    prepare_quantized(model)
    return is_quantized(model)


def wrap(model, peft_config, what: str):
    """``get_peft_model``; peft's refusals (a target that does not exist, a layer type the method cannot
    adapt) become one line naming the flag."""
    from peft import get_peft_model  # defers peft

    try:
        return get_peft_model(model, peft_config)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise TrainError(f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def _cast_adapters(model, dtype_name: str | None) -> None:
    """--lora_dtype: the adapter weights' dtype (peft keeps them float32 on a low-precision base)."""
    if dtype_name is None:
        return
    import torch  # defers torch

    dtype = getattr(torch, dtype_name)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.to(dtype)


def apply_lora(model, config):
    """LoRA (and QLoRA on a quantized base) with --use_dora/--use_rslora/--init_weights/--lora_dtype/
    --target_regex/--modules_to_save/--lora_bias."""
    tuner = config.tuner
    quantized = _prepare(model, config)
    check_init(tuner, quantized)
    tuned = wrap(model, lora_config(model, config), _describe_targets(tuner))
    if init_kind(tuner.init_weights) == "loftq":
        _loftq(tuned, config)
    _cast_adapters(tuned, tuner.lora_dtype)
    return tuned


def _loftq(model, config) -> None:
    """LoftQ on a 4-bit base: each adapter starts as the best rank-r fit of the quantization error
    W - Q(W), so base + adapter is closer to the full-precision model than the 4-bit base alone.
    W is read from the checkpoint's safetensors (the folder the base loaded from). peft's own
    ``replace_lora_weights_loftq`` computes on CUDA only (peft 0.21), so the fit is done here."""
    import torch  # defers torch
    from bitsandbytes.functional import dequantize_4bit  # defers bitsandbytes
    from peft.tuners.lora.bnb import Linear4bit  # defers peft

    if not getattr(model.get_base_model(), "is_loaded_in_4bit", False):
        raise TrainError("--init_weights loftq fits the error of 4-bit weights: use --quant_bits 4")
    weights = _SafetensorsWeights(model.get_base_model().config._name_or_path)
    prefix = "base_model.model."
    for name, module in model.named_modules():
        if not isinstance(module, Linear4bit) or "default" not in module.lora_A:
            continue
        key = name[len(prefix):] + ".weight"
        if key not in weights:
            raise TrainError(f"--init_weights loftq: {key} is not in the base model's safetensors files")
        base = module.get_base_layer().weight
        with torch.no_grad():
            full = weights.get(key).to(torch.float32)
            error = full - dequantize_4bit(base.data, base.quant_state).to(torch.float32)
            u, s, vh = torch.linalg.svd(error, full_matrices=False)
            r = module.r["default"]
            root = s[:r].sqrt()
            a, b = root[:, None] * vh[:r], u[:, :r] * root[None, :] / module.scaling["default"]
            module.lora_A["default"].weight.data = a.to(module.lora_A["default"].weight.dtype)
            module.lora_B["default"].weight.data = b.to(module.lora_B["default"].weight.dtype)


class _SafetensorsWeights:
    """The tensors of a model folder's safetensors files (one file or an index of shards), by name."""

    def __init__(self, folder: str):
        root = Path(folder)
        index = root / "model.safetensors.index.json"
        if index.is_file():
            self.files = {k: root / v for k, v in json.loads(index.read_text())["weight_map"].items()}
        elif (root / "model.safetensors").is_file():
            from safetensors import safe_open  # defers safetensors

            with safe_open(str(root / "model.safetensors"), framework="pt") as f:
                self.files = dict.fromkeys(f.keys(), root / "model.safetensors")
        else:
            raise TrainError(f"--init_weights loftq reads the base model's full-precision weights: {folder} has no "
                             "model.safetensors (or index); use --init_weights true")

    def __contains__(self, key: str) -> bool:
        return key in self.files

    def get(self, key: str):
        from safetensors import safe_open  # defers safetensors

        with safe_open(str(self.files[key]), framework="pt") as f:
            return f.get_tensor(key)


def apply_adalora(model, config):
    """AdaLoRA: LoRA whose ranks are pruned from --adalora_init_r towards --adalora_target_r while
    training. The rank allocation runs after every optimizer step (the ``adalora`` callback, added to
    every adalora run); the total step count is set when training starts."""
    t = config.tuner
    _prepare(model, config)
    total = _adalora_total_steps(config)
    peft_config = lora_config(
        model, config, peft_class="AdaLoraConfig", target_r=t.adalora_target_r, init_r=t.adalora_init_r,
        tinit=t.adalora_tinit, tfinal=t.adalora_tfinal, deltaT=t.adalora_deltaT, beta1=t.adalora_beta1,
        beta2=t.adalora_beta2, orth_reg_weight=t.adalora_orth_reg_weight, total_step=total)
    return wrap(model, peft_config, "--train_type adalora")


def _adalora_total_steps(config) -> int:
    """--max_steps when given; otherwise a placeholder past the schedule that the ``adalora`` callback
    replaces with the trainer's step count when training starts."""
    t, steps = config.tuner, config.training.max_steps
    if steps > 0 and t.adalora_tinit >= steps - t.adalora_tfinal:
        raise TrainError(f"adalora: --adalora_tinit {t.adalora_tinit} + --adalora_tfinal {t.adalora_tfinal} leave "
                         f"no step of --max_steps {steps} to prune ranks in; lower them")
    return steps if steps > 0 else t.adalora_tinit + t.adalora_tfinal + 1


def apply_vera(model, config):
    """VeRA: frozen random projections shared by all layers (--vera_rank), trained scaling vectors."""
    from peft import VeraConfig  # defers peft

    t = config.tuner
    _prepare(model, config)
    save, exclude = _saved_modules(model, t)
    peft_config = VeraConfig(
        r=t.vera_rank, target_modules=_targets(t), projection_prng_key=t.vera_projection_prng_key,
        vera_dropout=t.vera_dropout, d_initial=t.vera_d_initial, modules_to_save=save or None,
        task_type=_task_type(model), save_projection=True)
    if exclude:
        raise TrainError("--trainable_parameters with --train_type vera: vera cannot exclude modules from its "
                         "targets; choose them with --target_modules/--target_regex and use --modules_to_save")
    return wrap(model, peft_config, f"--train_type vera ({_describe_targets(t)}, --vera_rank {t.vera_rank})")


def apply_boft(model, config):
    """BOFT: each adapted weight is multiplied by a learned butterfly-factored orthogonal matrix."""
    from peft import BOFTConfig  # defers peft

    t = config.tuner
    _prepare(model, config)
    save, exclude = _saved_modules(model, t)
    peft_config = BOFTConfig(
        boft_block_size=t.boft_block_size if not t.boft_block_num else 0, boft_block_num=t.boft_block_num,
        boft_n_butterfly_factor=t.boft_n_butterfly_factor, boft_dropout=t.boft_dropout,
        target_modules=_targets(t), exclude_modules=exclude or None, modules_to_save=save or None,
        task_type=_task_type(model))
    return wrap(model, peft_config, f"--train_type boft ({_describe_targets(t)}, --boft_block_size "
                                    f"{t.boft_block_size}, --boft_block_num {t.boft_block_num})")


_FEEDFORWARD = ("gate_proj", "up_proj", "down_proj", "fc1", "fc2", "c_fc", "w1", "w2", "w3", "dense_h_to_4h",
                "dense_4h_to_h")


def _ia3_feedforward(model, t) -> list[str] | str:
    """--ia3_feedforward_modules, or the MLP projections among the adapted modules."""
    if t.ia3_feedforward_modules:
        return list(t.ia3_feedforward_modules)
    import torch  # defers torch

    leaves = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = leaves if list(t.target_modules) == ["all-linear"] or t.target_regex else set(t.target_modules)
    found = sorted(name for name in targets & leaves if name in _FEEDFORWARD)
    return found


def apply_ia3(model, config):
    """IA3: learned vectors rescaling the adapted layers' outputs (their inputs for feed-forward layers)."""
    from peft import IA3Config  # defers peft

    t = config.tuner
    _prepare(model, config)
    save, exclude = _saved_modules(model, t)
    targets = _targets(t)
    feedforward = _ia3_feedforward(model, t)
    if targets == "all-linear":
        # IA3 needs its feed-forward modules among the targets by name: list the linear layers.
        targets = linear_layer_names(model)
    peft_config = IA3Config(target_modules=targets, feedforward_modules=feedforward,
                            exclude_modules=exclude or None, modules_to_save=save or None,
                            task_type=_task_type(model))
    return wrap(model, peft_config, f"--train_type ia3 ({_describe_targets(t)}, --ia3_feedforward_modules "
                                    f"{' '.join(feedforward) if isinstance(feedforward, list) else feedforward})")


def _lycoris(model, config, name: str):
    import peft  # defers peft

    t = config.tuner
    _prepare(model, config)
    save, exclude = _saved_modules(model, t)
    cls = peft.LoHaConfig if name == "loha" else peft.LoKrConfig
    peft_config = cls(r=t.lora_rank, alpha=t.lora_alpha, target_modules=_targets(t), exclude_modules=exclude or None,
                      modules_to_save=save or None, task_type=_task_type(model))
    return wrap(model, peft_config, f"--train_type {name} ({_describe_targets(t)})")


def apply_loha(model, config):
    """LoHa: the weight update is the Hadamard product of two low-rank products (rank --lora_rank)."""
    return _lycoris(model, config, "loha")


def apply_lokr(model, config):
    """LoKr: the weight update is a Kronecker product of a small matrix and a low-rank one."""
    return _lycoris(model, config, "lokr")


# -- data passes (--init_weights eva / corda) ------------------------------------------------------


def corda_preprocess(model, config, batches) -> None:
    """CorDA: collect the adapted layers' input covariance over ``batches`` (before the adapters exist)."""
    import torch  # defers torch

    try:
        from peft.tuners.lora.corda import preprocess_corda  # defers peft
    except ImportError as exc:  # peft 0.21's corda module imports attrs (module attr), which peft does not require
        package = {"attr": "attrs"}.get(exc.name, exc.name)
        raise TrainError(f"--init_weights corda: peft's CorDA code needs the {package} package, which is not "
                         f"installed: pip install {package}, or use --init_weights pissa") from exc

    def run_model():  # peft's covariance hook takes one row at a time (it squeezes the batch dimension)
        with torch.no_grad():
            for batch in batches:
                ids, mask = batch["input_ids"], batch.get("attention_mask")
                for i in range(ids.shape[0]):
                    row = ids[i] if mask is None else ids[i][mask[i].bool()]  # without its padding
                    model(input_ids=row.unsqueeze(0))

    settings = lora_config(model, config)
    if settings.target_modules == "all-linear" or settings.target_modules == {"all-linear"}:
        # peft expands all-linear when it builds the adapters; CorDA's pass matches names as they are given
        settings.target_modules = set(linear_layer_names(model))
    preprocess_corda(model, settings, run_model=run_model)


def eva_initialise(model, batches, max_forwards: int = 200) -> None:
    """EVA: the adapters' A start as the top right-singular vectors of their layers' inputs at the
    labelled tokens of ``batches`` (ranks redistributed by explained variance); B stays zero, so the
    output is unchanged. peft repeats the batches until every layer's components converge; a pass that
    has not converged after ``max_forwards`` forwards is an error (peft would loop forever)."""
    import torch  # defers torch
    from peft import initialize_lora_eva_weights  # defers peft

    config = model.peft_config[model.active_adapter]
    needed = int(config.r * config.eva_config.rho)
    fewest = min(int((b["labels"] != -100).sum()) for b in batches)
    if fewest < needed:
        raise TrainError(f"--init_weights eva needs at least {needed} labelled tokens per batch of its data pass "
                         f"(--lora_rank x 2); a batch of the first training rows has {fewest}: use more or longer "
                         "rows, or --init_weights true")
    calls = 0

    def forward(peft_model, inputs):
        nonlocal calls
        calls += 1
        if calls > max_forwards:
            raise TrainError(f"--init_weights eva: the layers' input components did not converge in {max_forwards} "
                             "forward passes over the first training rows; use --init_weights true or pissa")
        with torch.no_grad():
            return peft_model(**inputs)

    initialize_lora_eva_weights(model, dataloader=batches, forward_fn=forward, show_progress_bar=False)
