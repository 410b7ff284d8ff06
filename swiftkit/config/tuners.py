"""Field groups deciding which weights train and how the base is held: the tuner and quantization.

``--train_type`` (ms-swift 4.x spells it ``--tuner_type``; both are accepted) picks a tuner through
the ``swiftkit_get_tuner`` hook; the method-specific flags below carry the tuners they apply to in
``metadata["tuners"]``, and giving one to another tuner is an error (checked by the command config).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional

from swiftkit.config.groups import _check, arg
from swiftkit.core.errors import ConfigError

LORA_LIKE = ("lora", "qlora")
INIT_WEIGHTS = ("true", "false", "gaussian", "pissa", "pissa_niter_N", "olora", "loftq", "eva", "corda")
_PISSA_NITER = re.compile(r"pissa_niter_[1-9][0-9]*")


@dataclass(frozen=True)
class TunerArgs:
    train_type: str = arg(
        "lora",
        "Tuner: lora (adapters; default targets every linear layer), qlora (lora on a 4-bit bitsandbytes "
        "base, or as --quant_method/--quant_bits say), full (all weights, or those "
        "--freeze_parameters*/--trainable_parameters* select), "
        "freeze (the last --freeze_trainable_layers layers), adalora, vera, boft, ia3, loha, "
        "lokr (peft), llamapro (new identity blocks), or one a plugin registers (reft and longlora are refused "
        "with the reason: docs/tuners.md). "
        "Alias: --tuner_type.",
        aliases=("tuner_type",),
    )
    lora_rank: int = arg(8, "LoRA rank r (also the rank of loha/lokr/adalora's starting rank).")
    lora_alpha: int = arg(32, "LoRA alpha (scale = alpha / rank; alpha / sqrt(rank) with --use_rslora).")
    lora_dropout: float = arg(0.05, "Dropout on the LoRA path.")
    target_modules: list[str] = arg(
        ["all-linear"], "Modules that get adapters; all-linear = every linear layer but the head."
    )
    target_regex: Optional[str] = arg(
        None, "Regular expression over full module names choosing the adapted modules (replaces "
        "--target_modules; peft matches it against the whole name).", tuners=LORA_LIKE + ("adalora", "vera", "boft",
                                                                                          "ia3", "loha", "lokr"),
    )
    modules_to_save: list[str] = arg(
        [], "Modules trained fully beside the adapters and saved with them (e.g. embed_tokens lm_head).",
    )
    lora_bias: Literal["none", "all", "lora_only"] = arg(
        "none", "Biases that train with LoRA: none, all, or those of adapted layers (lora_only).", tuners=LORA_LIKE,
    )
    use_dora: bool = arg(False, "DoRA: learn a magnitude vector per output row beside the LoRA direction.",
                         tuners=LORA_LIKE)
    use_rslora: bool = arg(False, "rsLoRA: scale by alpha / sqrt(rank) instead of alpha / rank.", tuners=LORA_LIKE)
    init_weights: str = arg(
        "true", "How LoRA adapters start: true (B = 0), false (random: the output changes), gaussian, pissa, "
        "pissa_niter_N (fast SVD with N iterations), olora, loftq, eva, corda (peft's initialisations; "
        "pissa/olora move the base weights so the output is unchanged).", tuners=LORA_LIKE,
    )
    lora_dtype: Optional[Literal["float32", "bfloat16", "float16"]] = arg(
        None, "dtype of the adapter weights (default: peft's, float32 on a low-precision base).", tuners=LORA_LIKE,
    )
    freeze_trainable_layers: int = arg(
        1, "With --train_type freeze: how many of the last decoder layers train (plus the norm).",
        tuners=("freeze",),
    )
    freeze_parameters: list[str] = arg(
        [], "With --train_type full: parameter name prefixes that stay frozen.", tuners=("full",),
    )
    freeze_parameters_regex: Optional[str] = arg(
        None, "With --train_type full: a regular expression; matching parameter names stay frozen.", tuners=("full",),
    )
    freeze_parameters_ratio: float = arg(
        0.0, "With --train_type full: the fraction of parameters, counted from the bottom (embeddings "
        "first), that stay frozen.", tuners=("full",),
    )
    trainable_parameters: list[str] = arg(
        [], "Parameter name prefixes that train whatever else is frozen (full: after the freeze flags; "
        "lora: trained fully beside the adapters).",
    )
    trainable_parameters_regex: Optional[str] = arg(
        None, "A regular expression; matching parameter names train (as --trainable_parameters).",
    )
    freeze_llm: bool = arg(False, "Multimodal models: keep the language model frozen.")
    freeze_vit: bool = arg(True, "Multimodal models: keep the vision tower frozen (text models have none).")
    freeze_aligner: bool = arg(True, "Multimodal models: keep the projector between vision and language frozen.")
    adalora_target_r: int = arg(8, "adalora: average rank the budget is cut to.", tuners=("adalora",))
    adalora_init_r: int = arg(12, "adalora: starting rank of every adapted module.", tuners=("adalora",))
    adalora_tinit: int = arg(0, "adalora: steps of warm-up before ranks are pruned.", tuners=("adalora",))
    adalora_tfinal: int = arg(0, "adalora: final steps trained at the target budget.", tuners=("adalora",))
    adalora_deltaT: int = arg(1, "adalora: steps between two budget allocations.", tuners=("adalora",))
    adalora_beta1: float = arg(0.85, "adalora: EMA factor of the importance sensitivity.", tuners=("adalora",))
    adalora_beta2: float = arg(0.85, "adalora: EMA factor of the importance uncertainty.", tuners=("adalora",))
    adalora_orth_reg_weight: float = arg(0.5, "adalora: weight of the orthogonality regulariser.",
                                         tuners=("adalora",))
    vera_rank: int = arg(256, "vera: rank of the shared frozen random matrices.", tuners=("vera",))
    vera_projection_prng_key: int = arg(0, "vera: seed of the shared random projections.", tuners=("vera",))
    vera_dropout: float = arg(0.0, "vera: dropout on the vera path.", tuners=("vera",))
    vera_d_initial: float = arg(0.1, "vera: initial value of the trained scaling vector d.", tuners=("vera",))
    boft_block_size: int = arg(4, "boft: size of each orthogonal block (0: set by --boft_block_num).",
                               tuners=("boft",))
    boft_block_num: int = arg(0, "boft: number of orthogonal blocks (0: set by --boft_block_size).",
                              tuners=("boft",))
    boft_n_butterfly_factor: int = arg(1, "boft: butterfly factors (1 is OFT).", tuners=("boft",))
    boft_dropout: float = arg(0.0, "boft: multiplicative dropout probability.", tuners=("boft",))
    ia3_feedforward_modules: list[str] = arg(
        [], "ia3: target modules that are feed-forward layers (scaled on their input); default: the "
        "model's MLP projections among the targets.", tuners=("ia3",),
    )
    llamapro_num_new_blocks: int = arg(
        4, "llamapro: decoder blocks added (each a copy of the block before it, its output projections "
        "zeroed so the model's output is unchanged); only they train.", tuners=("llamapro",),
    )
    llamapro_num_groups: Optional[int] = arg(
        None, "llamapro: groups the layers are split into, one new block after each group (default: "
        "--llamapro_num_new_blocks).", tuners=("llamapro",),
    )
    reft_layers: list[int] = arg([], "reft: layers intervened on (default: all).", tuners=("reft",))
    reft_rank: int = arg(4, "reft: rank of the intervention.", tuners=("reft",))
    reft_intervention_type: Literal["LoreftIntervention", "NoreftIntervention", "ConsreftIntervention",
                                    "LobireftIntervention", "DireftIntervention", "NodireftIntervention"] = arg(
        "LoreftIntervention", "reft: intervention class of pyreft.", tuners=("reft",),
    )

    def __post_init__(self):
        _check(self.lora_rank > 0, "--lora_rank must be > 0")
        _check(0.0 <= self.lora_dropout < 1.0, "--lora_dropout must be in [0, 1)")
        _check(self.freeze_trainable_layers >= 0, "--freeze_trainable_layers must be >= 0")
        _check(0.0 <= self.freeze_parameters_ratio <= 1.0, "--freeze_parameters_ratio must be in [0, 1]")
        _check(self.init_weights in INIT_WEIGHTS or bool(_PISSA_NITER.fullmatch(self.init_weights)),
               f"--init_weights must be one of {', '.join(INIT_WEIGHTS)} (N a positive integer), "
               f"got {self.init_weights!r}")
        for flag in ("target_regex", "freeze_parameters_regex", "trainable_parameters_regex"):
            pattern = getattr(self, flag)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(f"--{flag} {pattern!r} is not a valid regular expression: {exc}") from None
        _check(self.adalora_init_r > 0 and self.adalora_target_r > 0, "--adalora_init_r/--adalora_target_r must be > 0")
        _check(self.vera_rank > 0, "--vera_rank must be > 0")
        _check(self.boft_block_size > 0 or self.boft_block_num > 0,
               "boft needs --boft_block_size or --boft_block_num > 0")
        _check(self.llamapro_num_new_blocks > 0, "--llamapro_num_new_blocks must be > 0")
        _check(self.reft_rank > 0, "--reft_rank must be > 0")

    @property
    def init_lora_weights(self):
        """--init_weights as peft's ``init_lora_weights`` value (True/False or the method's name)."""
        return {"true": True, "false": False}.get(self.init_weights, self.init_weights)


@dataclass(frozen=True)
class QuantArgs:
    quant_method: Optional[Literal["bnb"]] = arg(
        None, "Quantize the base model as it loads (QLoRA with --train_type lora/qlora): bnb = bitsandbytes "
        "(runs on CPU and CUDA). Pre-quantized checkpoints (GPTQ, AWQ) load as they are, without this flag.",
    )
    quant_bits: Optional[int] = arg(None, "Bits of the quantized base: 4 or 8 (with --quant_method bnb).")
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = arg("nf4", "4-bit data type: nf4 (normal float) or fp4.")
    bnb_4bit_use_double_quant: bool = arg(
        True, "Quantize the 4-bit quantization constants too (saves ~0.4 bit/weight).")
    bnb_4bit_compute_dtype: Optional[Literal["float32", "bfloat16", "float16"]] = arg(
        None, "dtype the 4-bit layers compute in (default: --torch_dtype).",
    )
    bnb_4bit_quant_storage: Optional[Literal["uint8", "float32", "bfloat16", "float16"]] = arg(
        None, "dtype the packed 4-bit weights are stored in (default uint8).",
    )

    def __post_init__(self):
        _check((self.quant_method is None) == (self.quant_bits is None),
               "--quant_method and --quant_bits go together (e.g. --quant_method bnb --quant_bits 4)")
        _check(self.quant_bits in (None, 4, 8),
               f"--quant_bits {self.quant_bits}: bitsandbytes quantizes to 4 or 8 bits")
