"""``--optim`` names: transformers' ``OptimizerNames``, what each needs to run, and the checks that run
before any weights load.

transformers builds the optimizer only when training starts, so a missing package there is a deep
traceback after the model has loaded. :func:`check_optim_flags` turns each such case into one line
naming what to install or which device is needed. Package presence is looked up with
``importlib.util.find_spec`` (nothing is imported); the CUDA check imports torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from swiftkit.config.commands import KNOWN_TUNERS
from swiftkit.config.tuners import LORA_LIKE
from swiftkit.core.errors import ConfigError
from swiftkit.core.registry import closest

_BNB = ("bitsandbytes", "bitsandbytes: pip install 'swiftkit[qlora]'")
_GALORE = ("galore_torch", "galore-torch: pip install 'swiftkit[galore]'")

# name prefix or full name -> (module that must import, what to install). The first match wins.
_PACKAGES: list[tuple[str, tuple[str, str]]] = [
    ("adamw_torch_xla", ("torch_xla", "torch_xla and an XLA (TPU) device")),
    ("adamw_torch_npu_fused", ("torch_npu", "torch_npu and an Ascend NPU")),
    ("adamw_anyprecision", ("torchdistx", "the torchdistx package (built from its source)")),
    ("adamw_torch_4bit", ("torchao", "torchao: pip install torchao")),
    ("adamw_torch_8bit", ("torchao", "torchao: pip install torchao")),
    ("galore_", _GALORE),
    ("lomo", ("lomo_optim", "lomo-optim: pip install lomo-optim")),
    ("adalomo", ("lomo_optim", "lomo-optim: pip install lomo-optim")),
    ("grokadamw", ("grokadamw", "grokadamw: pip install grokadamw")),
    ("schedule_free_", ("schedulefree", "schedulefree: pip install schedulefree")),
    ("stable_adamw", ("optimi", "torch-optimi: pip install torch-optimi")),
    ("adamw_bnb_8bit", _BNB), ("adamw_8bit", _BNB), ("ademamix", _BNB), ("paged_", _BNB), ("lion_", _BNB),
    ("rmsprop_bnb", _BNB),
]

# Names transformers offers that cannot train correctly in a swiftkit run, and why.
_LAYERWISE_WHY = ("transformers' layer-wise optimizers step inside the backward pass, where the learning-rate "
                  "schedule, gradient clipping and accumulation do not reach them, and their checkpoints hold no "
                  "optimizer state")
REFUSED = {
    **{name: f"{_LAYERWISE_WHY}; use --optim {name.replace('_layerwise', '')} (or --optimizer galore) instead"
       for name in ("galore_adamw_layerwise", "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise")},
    "apollo_adamw_layerwise": f"{_LAYERWISE_WHY}; use --optimizer galore instead",
    "apollo_adamw": "transformers builds it only for its optim_target_modules setting, which swiftkit does not "
                    "pass; use --optimizer galore (low-rank optimizer state with typed flags) instead",
}

# Names whose transformers handler builds its own parameter list (so LoRA+ cannot group parameters for it).
OWN_PARAMS_PREFIXES = ("galore_", "apollo_", "lomo", "adalomo")

# Built-in tuners whose trainable weights are the model's own matrices (what GaLore projects).
_FULL_WEIGHTS = ("full", "freeze", "llamapro")

# --optim -> the galore-torch optimizer --optimizer galore uses for it.
GALORE_VARIANTS = {
    "adamw_torch": "AdamW", "adamw_torch_fused": "AdamW", "galore_adamw": "AdamW",
    "adafactor": "Adafactor", "galore_adafactor": "Adafactor",
    "adamw_bnb_8bit": "AdamW8bit", "adamw_8bit": "AdamW8bit", "galore_adamw_8bit": "AdamW8bit",
}


def optim_names() -> list[str]:
    """Every ``--optim`` value transformers knows, in its order."""
    from transformers.training_args import OptimizerNames  # defers transformers

    return [o.value for o in OptimizerNames]


# galore-torch's 8-bit AdamW calls bitsandbytes' CUDA-only blockwise kernels directly.
_CUDA_ONLY = "needs a CUDA GPU (galore-torch's 8-bit AdamW runs CUDA kernels only)"


def _has_cuda() -> bool:
    import torch  # defers torch

    return torch.cuda.is_available()


def optim_problem(optim: str) -> str | None:
    """Why ``--optim optim`` cannot run on this machine (one line), or None when it can."""
    if optim in REFUSED:
        return f"--optim {optim}: {REFUSED[optim]}"
    for prefix, (module, what) in _PACKAGES:
        if optim.startswith(prefix):
            if importlib.util.find_spec(module) is None:
                return f"--optim {optim} needs {what}"
            break
    if optim == "schedule_free_radam" and _version("schedulefree") < (1, 4):
        return "--optim schedule_free_radam needs schedulefree>=1.4: pip install -U schedulefree"
    if optim == "galore_adamw_8bit" and not _has_cuda():
        return f"--optim {optim} {_CUDA_ONLY}"
    return None


def _version(dist: str) -> tuple[int, ...]:
    try:
        text = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return (0,)
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def check_optim_name(optim: str) -> None:
    """One line listing the valid names (closest first) when ``optim`` is not one of transformers'."""
    names = optim_names()
    if optim not in names:
        raise ConfigError(f"--optim {optim!r} is not a transformers optimizer{closest(optim, names)}; "
                          f"valid: {', '.join(names)}")


def optimizer_name(cfg) -> str | None:
    """The built-in or plugin optimizer that builds this run's optimizer: --optimizer (lorap when
    --lorap_lr_ratio is set), galore for --optim galore_adamw/galore_adafactor/galore_adamw_8bit (transformers'
    own handler for those needs optim_target_modules and reads its settings from --optim_args; swiftkit has
    typed flags for them); None: the trainer builds --optim itself."""
    if cfg.effective_optimizer:
        return cfg.effective_optimizer
    return "galore" if cfg.optim.optim in ("galore_adamw", "galore_adafactor", "galore_adamw_8bit") else None


def check_optim_flags(cfg) -> None:
    """Every optimizer flag checked before weights load: --optim's name and what it needs here, and that it
    fits --optimizer lorap / galore (each needs --optim to be one it can use)."""
    opt, chosen = cfg.optim, optimizer_name(cfg)
    check_optim_name(opt.optim)
    if chosen == "galore":
        check_galore_flags(cfg)
        return
    if chosen not in (None, "lorap"):  # a plugin's optimizer: --optim is not used
        return
    problem = optim_problem(opt.optim)
    if problem:
        raise ConfigError(problem)
    if chosen == "lorap":
        check_lorap_flags(cfg)


def check_galore_flags(cfg) -> None:
    """GaLore needs galore-torch, an --optim it has a form of (8-bit: CUDA) and a tuner training whole weights."""
    opt = cfg.optim
    what = "--optimizer galore" if cfg.effective_optimizer else f"--optim {opt.optim}"
    if opt.optim not in GALORE_VARIANTS:
        raise ConfigError(f"--optimizer galore runs GaLore's AdamW, Adafactor or 8-bit AdamW; --optim {opt.optim} "
                          f"has no GaLore form: use --optim {', '.join(sorted(GALORE_VARIANTS))}")
    _check_package_for(what, _GALORE)
    if GALORE_VARIANTS[opt.optim] == "AdamW8bit" and not _has_cuda():
        with_optim = f" with --optim {opt.optim}" if cfg.effective_optimizer else ""
        raise ConfigError(f"{what}{with_optim} {_CUDA_ONLY}")
    if opt.lorap_lr_ratio is not None:
        raise ConfigError("--lorap_lr_ratio selects --optimizer lorap, which cannot be combined with --optimizer "
                          "galore: drop one of them")
    kind = cfg.tuner.train_type
    if kind in KNOWN_TUNERS and kind not in _FULL_WEIGHTS:
        raise ConfigError(f"{what} projects the gradients of whole weight matrices; --train_type {kind} trains "
                          "adapters: use --train_type full (or freeze)")


def check_lorap_flags(cfg) -> None:
    """LoRA+ needs a ratio, an --optim taking param groups and a tuner with LoRA B matrices (a plugin's tuner is
    checked on the model)."""
    if cfg.optim.optim.startswith(OWN_PARAMS_PREFIXES):
        raise ConfigError(f"--optimizer lorap groups the LoRA parameters itself; --optim {cfg.optim.optim} builds its "
                          "own parameter list: use an optimizer such as adamw_torch, adafactor, sgd or lion_32bit")
    if cfg.optim.lorap_lr_ratio is None:
        raise ConfigError("--optimizer lorap needs --lorap_lr_ratio (the LoRA B learning rate over --learning_rate; "
                          "16 in the LoRA+ paper)")
    kind = cfg.tuner.train_type
    if kind in KNOWN_TUNERS and kind not in (*LORA_LIKE, "adalora"):
        raise ConfigError(f"--optimizer lorap (--lorap_lr_ratio) trains LoRA B matrices faster; --train_type {kind} "
                          "has none: use --train_type lora")


def _check_package_for(what: str, package: tuple[str, str]) -> None:
    module, hint = package
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} needs {hint}")
