"""Field groups of the training parts chosen by name: optimizer settings, callbacks and metrics.

``--optim`` is one of transformers' optimizer names (AdamW by default); ``--optimizer`` picks a
built-in or plugin optimizer through the ``swiftkit_get_optimizer`` hook (lorap, galore, ...) and
then ``--optim`` is not used. Flags that switch a built-in callback on (``--early_stop_interval``,
``--lisa_activated_layers``, ``--neftune_noise_alpha``) add it as if it were named in ``--callbacks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from swiftkit.config.groups import _check, arg, json_object


@dataclass(frozen=True)
class OptimArgs:
    optim: str = arg(
        "adamw_torch", "transformers optimizer name (adamw_torch, adamw_torch_fused, adafactor, sgd, adagrad, "
        "rmsprop, lion_32bit, paged_adamw_8bit, ...: transformers' OptimizerNames); used unless --optimizer "
        "names another.",
    )
    adam_beta1: float = arg(0.9, "Adam beta1.")
    adam_beta2: float = arg(0.999, "Adam beta2 (ms-swift's default is 0.95 for some recipes; transformers' is 0.999).")
    adam_epsilon: float = arg(1e-8, "Adam epsilon.")
    optim_args: Optional[str] = arg(
        None, "Extra optimizer arguments as comma-separated key=value pairs, e.g. 'momentum=0.9,nesterov=True' "
        "(transformers' optim_args).",
    )
    lorap_lr_ratio: Optional[float] = arg(
        None, "LoRA+: the LoRA B matrices learn at this ratio x --learning_rate in their own parameter group "
        "(16 in the paper). Setting it selects --optimizer lorap.",
    )
    lorap_emb_lr: float = arg(1e-6, "LoRA+: learning rate of embedding adapters.")
    galore_rank: int = arg(128, "GaLore: rank of the gradient projection.")
    galore_update_proj_gap: int = arg(50, "GaLore: steps between two projection updates (SVDs).")
    galore_scale: float = arg(1.0, "GaLore: scale of the projected update.")
    galore_proj_type: Literal["std", "reverse_std", "right", "left", "full"] = arg(
        "std", "GaLore: which side the gradient is projected on.")
    galore_target_modules: list[str] = arg(
        [], "GaLore: name parts of the 2-D weights optimised low-rank (default: attention and MLP projections); "
        "the rest train with plain AdamW.",
    )
    lisa_activated_layers: int = arg(
        0, "LISA: decoder layers that train at a time, sampled anew every --lisa_step_interval steps (0: off); "
        "embeddings and head train throughout. Needs --train_type full.",
    )
    lisa_step_interval: int = arg(20, "LISA: steps between two samplings of the trained layers.")

    def __post_init__(self):
        _check(0.0 <= self.adam_beta1 < 1.0 and 0.0 <= self.adam_beta2 < 1.0,
               "--adam_beta1/--adam_beta2 must be in [0, 1)")
        _check(self.adam_epsilon > 0, "--adam_epsilon must be > 0")
        _check(self.lorap_lr_ratio is None or self.lorap_lr_ratio > 0, "--lorap_lr_ratio must be > 0")
        _check(self.galore_rank > 0 and self.galore_update_proj_gap > 0,
               "--galore_rank and --galore_update_proj_gap must be > 0")
        _check(self.lisa_activated_layers >= 0, "--lisa_activated_layers must be >= 0")
        _check(self.lisa_step_interval > 0, "--lisa_step_interval must be > 0")
        if self.optim_args:
            for pair in self.optim_args.split(","):
                _check("=" in pair and pair.split("=", 1)[0].strip() != "",
                       f"--optim_args takes key=value pairs separated by commas, got {self.optim_args!r}")


@dataclass(frozen=True)
class CallbackArgs:
    early_stop_interval: Optional[int] = arg(
        None, "Stop when --metric_for_best_model (eval loss by default) has not improved for this many "
        "evaluations (adds the early_stop callback; needs evaluation data).",
    )
    neftune_noise_alpha: Optional[float] = arg(
        None, "NEFTune: uniform noise of this scale (5 is common) added to the input embeddings while "
        "training (never in eval mode or inference).",
    )
    load_best_model_at_end: bool = arg(
        False, "Reload the checkpoint with the best --metric_for_best_model when training ends (adds save_best; "
        "saves happen at evaluations).",
    )
    metric_for_best_model: Optional[str] = arg(
        None, "What early_stop and save_best compare: loss (eval loss, the default) or a --metric key "
        "(acc, rouge-l, bleu).",
    )
    greater_is_better: Optional[bool] = arg(
        None, "Whether a larger --metric_for_best_model is better (default: false for loss, true otherwise).",
    )
    predict_with_generate: bool = arg(
        False, "At each evaluation, generate replies for --val_dataset prompts and score them with --metric "
        "(rouge-l, bleu) instead of teacher-forced token accuracy.",
    )
    perf_log_steps: int = arg(1, "perf_log callback: write a timing record every N steps.")

    def __post_init__(self):
        _check(self.early_stop_interval is None or self.early_stop_interval > 0, "--early_stop_interval must be > 0")
        _check(self.neftune_noise_alpha is None or self.neftune_noise_alpha > 0, "--neftune_noise_alpha must be > 0")
        _check(self.perf_log_steps > 0, "--perf_log_steps must be > 0")


def gradient_checkpointing_options(text: Optional[str]) -> dict:
    """--gradient_checkpointing_kwargs parsed (use_reentrant False unless given)."""
    options = json_object(text, "--gradient_checkpointing_kwargs", '{"use_reentrant": false}') if text else {}
    return {"use_reentrant": False, **options}
