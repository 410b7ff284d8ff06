"""Trainer callbacks some tuners need while training; the recipe adds them for those tuners
(:func:`swiftkit.recipes.parts.callback_names`), by name through the callback hook.

- ``adalora``: AdaLoRA prunes ranks from gradients after every optimizer step
  (``update_and_allocate``, before the gradients are cleared); its schedule needs the run's total
  step count, set here when training starts.
- ``adapter_conversion``: --init_weights pissa/olora/loftq/corda move the base weights when the
  adapters are created (W becomes W - B0 A0). A checkpoint's adapter is rewritten as the equivalent
  plain LoRA adapter of twice the rank (delta W = B A - B0 A0, peft's own conversion), so it applies
  to the original base model with plain peft, ``swiftkit infer --adapters`` and ``swiftkit export``.
  The adapter as created is kept once per run in ``initial_adapter/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from transformers import TrainerCallback

from swiftkit.train.errors import TrainError

INITIAL_ADAPTER = "initial_adapter"


def _peft_model(model):
    """The PeftModel inside what the trainer hands callbacks (it may be wrapped)."""
    while model is not None and not hasattr(model, "peft_config"):
        model = getattr(model, "module", None)
    return model


class AdaLoraAllocation(TrainerCallback):
    """Calls AdaLoRA's ``update_and_allocate`` after each optimizer step, with the step number."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        peft_model = _peft_model(model)
        if peft_model is None or not hasattr(peft_model.base_model, "update_and_allocate"):
            raise TrainError("the adalora callback needs --train_type adalora")
        config = peft_model.peft_config[peft_model.active_adapter]
        if config.tinit >= state.max_steps - config.tfinal:
            raise TrainError(f"adalora: --adalora_tinit {config.tinit} + --adalora_tfinal {config.tfinal} leave no "
                             f"step of the run's {state.max_steps} to prune ranks in; lower them")
        config.total_step = state.max_steps

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        # transformers calls this after optimizer.step() and before zero_grad(): the gradients are there.
        _peft_model(model).base_model.update_and_allocate(state.global_step)


class AdapterConversion(TrainerCallback):
    """Rewrites each checkpoint's adapter of a base-moving initialisation as a plain LoRA adapter."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.initial = Path(args.output_dir) / INITIAL_ADAPTER
        if state.global_step == 0:
            shutil.rmtree(self.initial, ignore_errors=True)
            _peft_model(model).save_pretrained(str(self.initial))
        elif not self.initial.is_dir():
            raise TrainError(f"{self.initial} is missing: the adapters of this run cannot be converted")

    def on_save(self, args, state, control, model=None, **kwargs):
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not ckpt.is_dir() or not args.should_save:
            return
        staging = ckpt / ".converted"
        shutil.rmtree(staging, ignore_errors=True)
        # peft rewrites the initial adapter's config (init_lora_weights=True) and reads it back in.
        _peft_model(model).save_pretrained(str(staging), path_initial_model_for_weight_conversion=str(self.initial))
        for name in os.listdir(staging):
            if name.startswith("adapter_"):
                os.replace(staging / name, ckpt / name)
        shutil.rmtree(staging, ignore_errors=True)

