"""The ``rlhf`` recipe: DPO, ORPO, SimPO, CPO, KTO, reward modelling, PPO and GRPO.

It is the SFT recipe with four steps replaced: rows are read as pairs / labelled replies / prompts
(:mod:`swiftkit.data.alignment`), encoded into the columns the method's trainer takes
(:mod:`swiftkit.train.rlhf_data`), the model is loaded with the extra models the method needs, and
the trainer is TRL's for the method (:mod:`swiftkit.train.rlhf_trainers`) or swiftkit's PPO. Model
resolution, tuners, run directory, args.json, manifest, logging.jsonl, checkpoints and resume are
the SFT recipe's. Nothing is written until data, rewards and models have been checked.

Reference models: with LoRA the reference is the base with the adapters switched off (no second
copy, not even of the adapter: see :class:`swiftkit.train.rlhf_trainers._AdaptersOffReference`);
with full or freeze training it is a frozen copy of the starting weights, none when dpo/kto
precompute the reference log-probs, or ``--ref_model``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from swiftkit.config import ConfigError, RlhfConfig
from swiftkit.train.errors import TrainError
from swiftkit.train.sft import SftRecipe

REFERENCE_METHODS = ("dpo", "kto", "grpo", "ppo")
# What each method logs that says whether it learns; drawn into PNGs next to loss.png.
PLOTS = {
    "rewards.png": ("rewards/chosen", "rewards/rejected", "reward", "objective/scores", "objective/rlhf_reward"),
    "margins.png": ("rewards/margins", "rewards/accuracies", "accuracy", "margin"),
    "kl.png": ("kl", "objective/kl"),
}
# Logged values reported in train_result.json: the method's own signal at the first and last log.
SIGNALS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "kl", "reward",
           "accuracy", "margin", "objective/scores", "objective/kl", "objective/rlhf_reward", "loss")


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def _freeze(model):
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


class RlhfRecipe(SftRecipe):
    """``swiftkit rlhf --rlhf_type dpo|orpo|simpo|cpo|kto|rm|ppo|grpo``."""

    def __init__(self, cfg: RlhfConfig):
        super().__init__(cfg)
        self.method = cfg.rlhf.rlhf_type
        self.ref_model = self.reward_model = self.value_model = None
        self.reward_funcs: list = []
        self.adapter_ckpt: Path | None = None  # --adapters: the trained LoRA training continues from

    # -- start ----------------------------------------------------------------------------------

    def _resume_checkpoint(self):
        resume = super()._resume_checkpoint()
        if self.cfg.rlhf.adapters and self.adapter_ckpt is None:
            self._inherit_from_adapters()
        return resume

    def _inherit_from_adapters(self) -> None:
        """--adapters: the base model, template and system prompt the adapter was trained with
        (explicit flags win), as `swiftkit infer --adapters` reads them."""
        from swiftkit.infer.loading import INHERITED, effective_settings, find_checkpoint, is_lora_dir, read_train_args

        ckpt = find_checkpoint(self.cfg.rlhf.adapters[0])
        if not is_lora_dir(ckpt):
            raise TrainError(f"--adapters {str(ckpt)!r} holds full weights, not a LoRA adapter: pass it as --model")
        train_args, _ = read_train_args(ckpt)
        if train_args is None and not self.cfg.model.model:
            raise TrainError(f"--adapters {str(ckpt)!r}: no args.json next to it, so its base model is unknown; "
                             "pass --model")
        if train_args is not None and train_args.get("rlhf_type") == "rm":
            raise TrainError(f"--adapters {str(ckpt)!r} is a reward model; pass it as --reward_model")
        settings = effective_settings(self.cfg, train_args)
        for key, group in INHERITED.items():
            setattr(getattr(self.cfg, group), key, settings[key])
        self.adapter_ckpt = ckpt

    # -- data -----------------------------------------------------------------------------------

    def _data_kwargs(self) -> dict:
        from swiftkit.data.alignment import CONVERTERS

        return {**super()._data_kwargs(), "convert": CONVERTERS[self.method]}

    def _encode(self, train_rows, val_rows):
        from datasets import Dataset

        from swiftkit.train.rlhf_data import encode_for

        if self.method == "kto":
            # TRL reads KTO data in order (each batch's KL term pairs its own rows); one seeded shuffle
            # keeps desirable and undesirable rows from arriving in separate batches.
            import random

            train_rows = list(train_rows)
            random.Random(self.cfg.data.data_seed).shuffle(train_rows)
        train, skipped = encode_for(self.method, train_rows, self.template, "--dataset")
        val, val_skipped = encode_for(self.method, val_rows, self.template, "--val_dataset") if val_rows else ([], 0)
        if skipped or val_skipped:
            print(f"[swiftkit] skipped {skipped} training and {val_skipped} validation rows longer than "
                  f"--max_length {self.template.max_length}", file=sys.stderr)
        return Dataset.from_list(train), Dataset.from_list(val) if val else [], skipped + val_skipped

    def _check_parts(self) -> None:
        """Reward functions resolve by name before any weights load (a typo costs nothing)."""
        if self.method != "grpo" or not self.cfg.rlhf.reward_funcs:
            return
        from swiftkit.train.rewards import resolve_reward_funcs

        self.reward_funcs = resolve_reward_funcs(self.registries.rewards, self.cfg.rlhf.reward_funcs, self.cfg)

    # -- models ---------------------------------------------------------------------------------

    def _load_model(self):
        from transformers import set_seed

        from swiftkit.choices import choose
        from swiftkit.models import load_model

        m, t, r = self.cfg.model, self.cfg.tuner, self.cfg.rlhf
        self._registry_lora_targets()
        set_seed(self.cfg.training.seed)
        scalar = self.method == "rm"
        try:
            model = load_model(self.resolved, torch_dtype=m.torch_dtype, trust_remote_code=m.trust_remote_code,
                               scalar_head=scalar)
        except ValueError as exc:
            if scalar and "Unrecognized configuration class" in str(exc):
                raise TrainError(f"--rlhf_type rm: transformers has no sequence-classification class for "
                                 f"{self.resolved.path}: {exc}") from exc
            raise
        if scalar:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        if self.method in ("grpo", "ppo"):
            # Generation stops at the template's end of turn, not only at the tokenizer's EOS.
            model.generation_config.eos_token_id = list(self.template.stop_token_ids)
            model.generation_config.pad_token_id = self.tokenizer.pad_token_id
        if r.ref_model:
            self.ref_model = self._load_reference(r.ref_model)
        elif self.method in REFERENCE_METHODS and t.train_type != "lora" and not self._precomputed_reference():
            self.ref_model = _freeze(copy.deepcopy(model))
        if self.cfg.training.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        if self.adapter_ckpt is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self.adapter_ckpt), is_trainable=True)
            print(f"[swiftkit] continuing the LoRA adapter in {self.adapter_ckpt} (its rank and targets); it is "
                  "also the reference", file=sys.stderr)
            if self.method == "ppo":  # swiftkit's PPO switches adapters off for its reference: give it a copy
                self.ref_model = _freeze(copy.deepcopy(model).merge_and_unload())
        else:
            model = choose(self.pm, "tuner", t.train_type, model=model, config=self.cfg)
        if self.ref_model is None and self.method in REFERENCE_METHODS and not _is_peft(model) \
                and not self._precomputed_reference():
            raise TrainError(f"--train_type {t.train_type} gives no adapters to switch off for the reference "
                             "model; pass --ref_model")
        if _is_peft(model) and self.ref_model is not None and not r.ref_model and self.adapter_ckpt is None:
            self.ref_model = None  # a plugin tuner made adapters after all: switching them off is the reference
        if self.method == "ppo":
            self.reward_model = _freeze(self._load_scalar(r.reward_model, "--reward_model"))
            value = self._load_scalar(r.value_model or r.reward_model, "--value_model")
            for param in value.parameters():
                param.requires_grad_(True)
            self.value_model = value
        elif self.method == "grpo" and r.reward_model:
            self.reward_model = _freeze(self._load_scalar(r.reward_model, "--reward_model"))
        return model

    def _precomputed_reference(self) -> bool:
        """dpo/kto with --precompute_ref_log_probs: the starting weights score every row once before
        the first step, so no reference copy is kept."""
        return self.method in ("dpo", "kto") and self.cfg.rlhf.precompute_ref_log_probs

    def _load_reference(self, name: str):
        from swiftkit.models import load_model, resolve_model

        m = self.cfg.model
        resolved = resolve_model(name, use_hf=m.use_hf, cache_dir=m.cache_dir, registry=self.registries.models)
        return _freeze(load_model(resolved, torch_dtype=m.torch_dtype, trust_remote_code=m.trust_remote_code))

    def _load_scalar(self, spec: str, flag: str):
        """A reward / value model: an `rlhf --rlhf_type rm` run or checkpoint (LoRA merged into its base),
        a sequence-classification model directory, or a name or hub id."""
        from swiftkit.infer.loading import find_checkpoint, is_lora_dir, read_train_args
        from swiftkit.models import load_model, resolve_model

        m = self.cfg.model
        kw = dict(torch_dtype=m.torch_dtype, trust_remote_code=m.trust_remote_code, scalar_head=True)
        if Path(spec).expanduser().is_dir():
            folder = find_checkpoint(spec, flag)
            if is_lora_dir(folder):
                from peft import PeftModel

                args, _ = read_train_args(folder)
                if args is None:
                    raise TrainError(f"{flag} {spec!r}: a LoRA adapter without args.json; pass the merged model instead")
                base = resolve_model(args.get("model_path") or args["model"], registry=self.registries.models,
                                     cache_dir=m.cache_dir)
                model = PeftModel.from_pretrained(load_model(base, **kw), str(folder)).merge_and_unload()
            else:
                model = load_model(str(folder), registry=self.registries.models, **kw)
        else:
            model = load_model(resolve_model(spec, use_hf=m.use_hf, cache_dir=m.cache_dir,
                                             registry=self.registries.models), **kw)
        vocab = len(self.tokenizer)
        if model.get_input_embeddings().num_embeddings < vocab:
            raise TrainError(f"{flag} {spec!r} has {model.get_input_embeddings().num_embeddings} token embeddings "
                             f"but the policy's tokenizer has {vocab} tokens: it must share the policy's tokenizer")
        model.config.pad_token_id = self.tokenizer.pad_token_id
        return model

    # -- trainer --------------------------------------------------------------------------------

    def _choose_trainer(self):
        from swiftkit.train.rlhf_trainers import trainer_class

        if self.cfg.training.trainer != "default":
            raise ConfigError("--trainer chooses the sft/pt trainer; `swiftkit rlhf` uses the trainer of --rlhf_type")
        return trainer_class(self.method)

    def _plugin_parts(self):
        if self.cfg.training.loss_type or self.cfg.training.metric:
            raise ConfigError("--loss_type/--metric apply to sft/pt; each --rlhf_type has its own loss "
                              "(dpo variants: --dpo_loss_type)")
        return super()._plugin_parts()

    def _precision(self) -> dict:
        import torch

        dtype = next(self.model.parameters()).dtype
        return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}

    def _build_trainer(self):
        from swiftkit.train.callbacks import CountingCollator
        from swiftkit.train.rlhf_data import real_tokens
        from swiftkit.train.rlhf_trainers import method_config

        _, _, optimizer, callbacks = self.parts
        callbacks = self._run_callbacks(callbacks, PLOTS)
        args = method_config(self.method, self._training_kwargs(), self.cfg, max_length=self.template.max_length,
                             precision=self._precision())
        kw = dict(model=self.model, args=args, train_dataset=self.train_data, eval_dataset=self.val_data or None,
                  processing_class=self.tokenizer, callbacks=callbacks, optimizers=(optimizer, None))
        if self.method in ("dpo", "kto", "grpo"):
            kw["ref_model"] = self.ref_model
            # a trained starting adapter: TRL's frozen copy of it is the reference
            kw["adapters_off_reference"] = self.adapter_ckpt is None
        if self.method == "grpo":
            if self.tokenizer.chat_template != self.template.chat_template:
                self.tokenizer.chat_template = self.template.chat_template  # TRL renders prompts with it
            kw["reward_funcs"] = [*self.reward_funcs, *([self.reward_model] if self.reward_model is not None else [])]
            if self.reward_model is not None:
                kw["reward_processing_classes"] = [None] * len(self.reward_funcs) + [self.tokenizer]
        elif self.method == "ppo":
            kw.update(ref_model=self.ref_model, reward_model=self.reward_model, value_model=self.value_model,
                      settings=self._ppo_settings())
        trainer = self.trainer_cls(**kw)
        method = self.method
        trainer.data_collator = CountingCollator(trainer.data_collator, self.counter,
                                                 count=lambda features: real_tokens(method, features))
        return trainer

    def _ppo_settings(self):
        from swiftkit.train.ppo import PPOSettings

        r = self.cfg.rlhf
        return PPOSettings(
            kl_coef=r.beta_value, num_ppo_epochs=r.num_ppo_epochs, cliprange=r.cliprange,
            cliprange_value=r.cliprange_value, vf_coef=r.vf_coef, gamma=r.gamma, lam=r.lam,
            max_completion_length=r.max_completion_length, temperature=r.temperature,
            missing_eos_penalty=r.missing_eos_penalty, stop_token_ids=list(self.template.stop_token_ids),
            pad_token_id=self.tokenizer.pad_token_id,
        )

    # -- run ------------------------------------------------------------------------------------

    def run(self) -> dict:
        from swiftkit.train.output import write_json

        result = super().run()
        history = self.trainer.state.log_history
        signals = {}
        for key in SIGNALS:
            values = [h[key] for h in history if key in h and "train_runtime" not in h]
            if values:
                signals[key] = {"first": values[0], "last": values[-1]}
        result.update(rlhf_type=self.method, signals=signals)
        if not result.get("train_tokens"):
            result["train_tokens"] = result["train_tokens_per_s"] = None  # online methods: see logging.jsonl
        write_json(self.run_dir / "train_result.json", result)
        return result


def run_rlhf(cfg: RlhfConfig) -> dict:
    """Build and run the recipe for an ``rlhf`` config."""
    recipe = RlhfRecipe(cfg)
    recipe.setup()
    return recipe.run()
