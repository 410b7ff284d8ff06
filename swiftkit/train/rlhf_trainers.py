"""TRL's alignment trainers fed with swiftkit's encoded data, and their configs built from swiftkit flags.

TRL tokenizes preference / KTO data itself with ``apply_chat_template`` pieces; swiftkit encodes it
before (see :mod:`swiftkit.data.encode_alignment`) so the prompt ids are exactly the serving prompt, and a
registered template (a model without its own chat template) works the same way. Each subclass only
replaces the step that would tokenize again: ``_prepare_dataset`` (DPO, KTO) or ``tokenize_row``
(TRL's CPO and ORPO, which keep their older per-row tokenizer). ``RewardTrainer`` is used as it
is (it accepts token ids); ``GRPOTrainer`` generates from the conversations with the same chat
template and only gains a ``ref_model`` argument. PPO is swiftkit's own (:mod:`swiftkit.train.ppo`):
TRL 1.16 no longer ships one.
"""

from __future__ import annotations

import warnings

from swiftkit.train.errors import TrainError
from swiftkit.train.sharding import EngineSetup


class _AdaptersOffReference:
    """For TRL's DPO, KTO and GRPO trainers given a peft model and no reference model.

    TRL then adds a frozen "ref" adapter copied from the model's adapter (meant for re-training a
    pretrained adapter). swiftkit's adapters are fresh, so the copy equals the base: removing it
    makes TRL compute reference log-probs with the adapters switched off (measured ~10% faster
    per reference forward) and keeps a second adapter out of every checkpoint. With
    ``adapters_off_reference=False`` (training continues a trained adapter, ``--adapters``) the copy
    stays: it is the reference.
    """

    def __init__(self, *args, adapters_off_reference: bool = True, **kwargs):
        # Relies on TRL (1.16) naming its copied adapter "ref". Remove when TRL computes the
        # reference with the adapters disabled for a fresh adapter.
        super().__init__(*args, **kwargs)
        model = self.accelerator.unwrap_model(self.model)
        if adapters_off_reference and kwargs.get("ref_model") is None and "ref" in getattr(model, "peft_config", {}):
            model.delete_adapter("ref")
            model.set_adapter("default")


def _dpo_trainer():
    from trl import DPOTrainer  # defers trl

    class EncodedDPOTrainer(_AdaptersOffReference, DPOTrainer):
        """DPO on ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` encoded by swiftkit."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            # Private TRL method (1.16): the rows are already encoded. Remove when TRL's DPOTrainer
            # accepts pre-tokenized datasets as they are.
            return dataset

    return EncodedDPOTrainer


def _kto_trainer():
    from trl import KTOTrainer  # defers trl

    class EncodedKTOTrainer(_AdaptersOffReference, KTOTrainer):
        """KTO on ``prompt_ids`` / ``completion_ids`` / ``label`` encoded by swiftkit.

        KTO's KL term compares each prompt with a reply written for another prompt: within every
        batch (read in order) the replies are rotated by one, so each batch's mismatched replies are
        its own replies.
        """

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            # Private TRL method (1.16): the rows are already encoded; only the KL pairs are added.
            # Remove when TRL's KTOTrainer accepts pre-tokenized datasets as they are.
            if not self.calculate_KL:
                return dataset

            def mismatched(batch):
                replies = batch["completion_ids"]
                return {"KL_completion_ids": replies[-1:] + replies[:-1]}

            return dataset.map(mismatched, batched=True, batch_size=args.per_device_train_batch_size)

    return EncodedKTOTrainer


def _pair_row(feature) -> dict:
    """TRL CPO/ORPO's per-row layout from swiftkit's ids: prompt, and prompt + reply with the
    prompt masked out of the labels."""
    prompt, out = list(feature["prompt_ids"]), {}
    for side in ("chosen", "rejected"):
        ids = prompt + list(feature[f"{side}_ids"])
        out[f"{side}_input_ids"] = ids
        out[f"{side}_attention_mask"] = [1] * len(ids)
        out[f"{side}_labels"] = [-100] * len(prompt) + list(feature[f"{side}_ids"])
    out["prompt_input_ids"] = prompt
    out["prompt_attention_mask"] = [1] * len(prompt)
    return out


def _experimental(module: str, name: str):
    with warnings.catch_warnings():  # TRL warns that its experimental package may change
        warnings.simplefilter("ignore")
        mod = __import__(f"trl.experimental.{module}", fromlist=[name])
    return getattr(mod, name)


def _encoded_pair_trainer(module: str, name: str):
    """TRL's experimental CPO (also SimPO) or ORPO trainer on ids encoded by swiftkit (the text
    columns are only carried along)."""
    base = _experimental(module, name)

    class EncodedPairTrainer(base):
        def tokenize_row(self, feature, model=None) -> dict:
            return _pair_row(feature)

    EncodedPairTrainer.__name__ = EncodedPairTrainer.__qualname__ = f"Encoded{name}"
    return EncodedPairTrainer


def _reward_trainer():
    from trl import RewardTrainer  # defers trl

    return RewardTrainer


def _grpo_trainer():
    from trl import GRPOTrainer  # defers trl

    class GRPOTrainerWithReference(_AdaptersOffReference, GRPOTrainer):
        """GRPO taking ``ref_model`` like the other trainers, and generating on a `swiftkit rollout` server when
        given ``rollouts`` (:class:`~swiftkit.train.rollout_client.ServerRollouts`).

        TRL 1.16's GRPOTrainer has no ``ref_model`` argument: without adapters it loads a second copy
        of the policy from the path in its config, which ignores ``--ref_model``, reloads weights
        swiftkit already holds and fails for models that path cannot load (GGUF). While its
        ``__init__`` runs, that loader hands back swiftkit's reference instead. Remove once TRL
        accepts a reference model.
        """

        def __init__(self, *args, ref_model=None, rollouts=None, **kwargs):
            self.rollouts = rollouts  # a ServerRollouts: a `swiftkit rollout` server generates the completions
            if ref_model is None:
                super().__init__(*args, **kwargs)
            else:
                import trl.trainer.grpo_trainer as grpo_module  # defers trl

                loader = grpo_module.create_model_from_path
                grpo_module.create_model_from_path = lambda *_args, **_kwargs: ref_model
                try:
                    super().__init__(*args, **kwargs)
                finally:
                    grpo_module.create_model_from_path = loader
            if rollouts is not None:
                rollouts.check_trainer(self)

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            # TRL (1.16) method producing the completion ids of one generation round; with a rollout server the
            # server generates them (text prompts only). Its own vLLM server path needs vllm and an NCCL
            # communicator. Remove when TRL takes a pluggable generation backend.
            if self.rollouts is None:
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                     has_tool_images)
            return self.rollouts.completions(self, prompt_ids, num_generations), None

    return GRPOTrainerWithReference


def _ppo_trainer():
    from swiftkit.train.ppo import PPOTrainer  # defers transformers

    return PPOTrainer


TRAINERS = {
    "dpo": _dpo_trainer, "orpo": lambda: _encoded_pair_trainer("orpo", "ORPOTrainer"),
    "simpo": lambda: _encoded_pair_trainer("cpo", "CPOTrainer"),
    "cpo": lambda: _encoded_pair_trainer("cpo", "CPOTrainer"), "kto": _kto_trainer,
    "rm": _reward_trainer, "grpo": _grpo_trainer, "ppo": _ppo_trainer,
}


def trainer_class(method: str):
    """The trainer class of ``method``, with the engine adjustments of :mod:`swiftkit.train.sharding`."""
    cls = TRAINERS[method]()
    return type(cls.__name__, (EngineSetup, cls), {"__module__": cls.__module__, "__doc__": cls.__doc__})


def method_config(method: str, base: dict, cfg, *, max_length: int | None, precision: dict,
                  chat_kwargs: dict | None = None):
    """The TRL config of ``method``: ``base`` (swiftkit's shared TrainingArguments fields) plus the
    method's own settings from its flag group (``cfg.dpo``, ``cfg.grpo``, ...). --loss_type, ms-swift's
    name for a method's loss variant, is read through ``cfg.dpo_losses`` and ``cfg.grpo_loss``.

    TRL turns gradient checkpointing and bf16 on by default; swiftkit decides both itself (the
    recipe enables checkpointing when asked; ``precision`` is --bf16/--fp16, or follows --torch_dtype).
    ``chat_kwargs`` (the template's --enable_thinking) reach the chat template GRPO renders prompts with."""
    common = dict(base, gradient_checkpointing=False, **precision)
    beta = cfg.rlhf.beta_value
    if method == "dpo":
        from trl import DPOConfig  # defers trl

        d = cfg.dpo
        loss_type = list(cfg.dpo_losses)  # --dpo_loss_type, or ms-swift's --loss_type
        weights = list(d.dpo_loss_weights) or None
        if d.rpo_alpha is not None:
            loss_type.append("sft")
            weights = (weights or [1.0] * (len(loss_type) - 1)) + [d.rpo_alpha]
        return DPOConfig(**common, beta=beta, loss_type=loss_type, loss_weights=weights,
                         label_smoothing=d.label_smoothing, max_length=None,
                         precompute_ref_log_probs=cfg.rlhf.precompute_ref_log_probs)
    if method in ("cpo", "simpo"):
        config_cls = _experimental("cpo", "CPOConfig")
        c = cfg.cpo
        alpha = c.cpo_alpha if c.cpo_alpha is not None else (1.0 if method == "cpo" else 0.0)
        return config_cls(**common, beta=beta, loss_type="simpo" if method == "simpo" else "sigmoid",
                          simpo_gamma=c.simpo_gamma, cpo_alpha=alpha, label_smoothing=cfg.dpo.label_smoothing,
                          max_length=max_length, max_completion_length=max_length)
    if method == "orpo":
        config_cls = _experimental("orpo", "ORPOConfig")
        return config_cls(**common, beta=beta, max_length=max_length, max_completion_length=max_length)
    if method == "kto":
        from trl import KTOConfig  # defers trl

        return KTOConfig(**common, beta=beta, desirable_weight=cfg.kto.desirable_weight,
                         undesirable_weight=cfg.kto.undesirable_weight, max_length=None,
                         precompute_ref_log_probs=cfg.rlhf.precompute_ref_log_probs)
    if method == "rm":
        from trl import RewardConfig  # defers trl

        return RewardConfig(**common, max_length=None, center_rewards_coefficient=cfg.rm.center_rewards_coefficient)
    if method == "grpo":
        from trl import GRPOConfig  # defers trl

        g, o, v = cfg.grpo, cfg.rollout, cfg.vllm_rollout
        colocate = {}
        if v.use_vllm and v.vllm_mode == "colocate":  # TRL's own colocated vLLM (a server is swiftkit's own)
            colocate = dict(use_vllm=True, vllm_mode="colocate",
                            vllm_gpu_memory_utilization=v.vllm_gpu_memory_utilization,
                            vllm_tensor_parallel_size=v.vllm_tensor_parallel_size,
                            vllm_enable_sleep_mode=v.sleep_level > 0)
        return GRPOConfig(**common, beta=beta, num_generations=g.num_generations,
                          max_completion_length=o.max_completion_length, temperature=o.temperature,
                          epsilon=o.cliprange, reward_weights=list(g.reward_weights) or None,
                          loss_type=cfg.grpo_loss, scale_rewards=g.scale_rewards,
                          num_iterations=g.num_iterations, log_completions=False,
                          chat_template_kwargs=dict(chat_kwargs) if chat_kwargs else None, **colocate)
    if method == "ppo":
        from transformers import TrainingArguments  # defers transformers

        return TrainingArguments(**{**base, **precision})
    raise TrainError(f"unknown rlhf method {method!r}")
