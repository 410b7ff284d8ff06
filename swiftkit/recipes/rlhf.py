"""The ``rlhf`` recipe: DPO, ORPO, SimPO, CPO, KTO, reward modelling, PPO and GRPO.

A sibling of the ``sft`` recipe sharing its step functions (:mod:`swiftkit.recipes.steps`): rows
are read as pairs / labelled replies / prompts (:mod:`swiftkit.data.alignment`), encoded into the
columns the method's trainer takes (:mod:`swiftkit.data.encode_alignment`), the policy is loaded
with the extra models the method needs (:mod:`swiftkit.recipes.rlhf_models`), and the trainer is
TRL's for the method (:mod:`swiftkit.train.rlhf_trainers`) or swiftkit's PPO. Nothing is written
until data, rewards and models have been checked.
"""

from __future__ import annotations

import copy
import random

from swiftkit.config import RlhfConfig
from swiftkit.core import distributed
from swiftkit.data.alignment import CONVERTERS
from swiftkit.data.encode_alignment import encode_for, real_tokens
from swiftkit.inference.rollout_protocol import model_identity
from swiftkit.models import set_num_threads
from swiftkit.recipes import dryrun, parts, rlhf_models, steps
from swiftkit.recipes.records import write_run_records
from swiftkit.recipes.train_benchmarks import attach_benchmarks, benchmark_plots, prepare_benchmarks
from swiftkit.templates.selection import load_tokenizer_and_template
from swiftkit.train.collate import VisionPreferenceCollator
from swiftkit.train.errors import TrainError
from swiftkit.train.precision import mixed_precision, weights_precision
from swiftkit.train.rewards import resolve_reward_funcs
from swiftkit.train.rlhf_trainers import method_config, trainer_class
from swiftkit.train.rollout_client import RolloutClient, ServerRollouts, require_colocated_vllm
from swiftkit.train.tuners import ADAPTER_TUNERS
from swiftkit.train.tuners_peft import prepare_quantized

# What each method logs that says whether it learns; drawn into PNGs next to loss.png.
PLOTS = {
    "rewards.png": ("rewards/chosen", "rewards/rejected", "reward", "objective/scores", "objective/rlhf_reward"),
    "margins.png": ("rewards/margins", "rewards/accuracies", "accuracy", "margin"),
    "kl.png": ("kl", "objective/kl"),
}
# Logged values reported in train_result.json: the method's own signal at the first and last log.
SIGNALS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "kl", "reward",
           "accuracy", "margin", "objective/scores", "objective/kl", "objective/rlhf_reward", "loss")


class RlhfRecipe:
    """``swiftkit rlhf --rlhf_type dpo|orpo|simpo|cpo|kto|rm|ppo|grpo``."""

    def __init__(self, config: RlhfConfig, host):
        self.config = config
        self.host = host
        self.method = config.rlhf.rlhf_type

    def setup(self) -> None:
        self.config, data_inherited = steps.resume_data_args(self.config)  # --load_data_args
        cfg, host = self.config, self.host
        self.ranks = steps.join_ranks(cfg.training)  # one process group when a launcher started several
        self.resume, resumed = steps.resume_point(cfg)
        self.adapter_ckpt, inherited = rlhf_models.adapter_start(cfg)
        inherited = {**data_inherited, **resumed, **inherited}
        set_num_threads(cfg.model.num_threads)
        model_args = steps.with_settings(cfg.model, inherited)
        self.resolved, self.tokenizer, self.template = load_tokenizer_and_template(
            model_args, steps.with_settings(cfg.template, inherited), host.registries)
        self.rows = steps.load_training_rows(cfg, host.registries, self._data_options())
        # rows with images (DPO): the template plus the model's processor
        self.vision = steps.vision_encoder(self.resolved, cfg, self.template, (self.rows.train, self.rows.val))
        if self.vision is not None and self.method != "dpo":
            raise TrainError(f"rows with images train with --rlhf_type dpo (or swiftkit sft); --rlhf_type "
                             f"{self.method} takes text rows only")
        self.train_data, self.val_data, too_long = self._encode()
        self.reward_funcs = self._reward_funcs()
        self.parts = parts.choose_training_parts(host, cfg, trainer=False, loss=False)  # the method's own loss
        self.benchmarks = prepare_benchmarks(cfg, host)  # --eval_benchmarks: loaded now, scored at evaluations
        self.trackers = parts.tracker_callbacks(cfg)
        self.plan = steps.new_plan(
            cfg, model_args=model_args, resolved=self.resolved, template=self.template, rows=self.rows,
            num_train_rows=len(self.train_data), num_val_rows=len(self.val_data), rows_too_long=too_long,
            resume=self.resume, inherited=inherited, new_adapter=self.adapter_ckpt is None,
            rlhf_type=self.method, beta=cfg.rlhf.beta_value)
        if cfg.training.dry_run:  # the plan without weights or a run folder; run() returns it
            self.dry_run = dryrun.rlhf_plan(
                host, cfg, method=self.method, resolved=self.resolved, template=self.template, rows=self.rows,
                train_data=self.train_data, val_data=self.val_data, too_long=too_long, run_plan=self.plan,
                adapter_ckpt=self.adapter_ckpt)
            return
        self.rollouts = self._rollout_server()  # --vllm_mode server: up and answering before any weights load
        self.model, self.extra = self._load_models()
        if self.rollouts is not None:
            self._check_served_model()
        self.plan.method["reference"] = self.extra.description
        self.folder = steps.open_run_folder(cfg.training.output_dir, self.resume, self.ranks)
        self.trainer, self.counter = steps.built_or_discarded(self.folder, self._write_records_and_build_trainer)

    # -- steps -------------------------------------------------------------------------------------

    def _data_options(self) -> dict:
        return steps.data_options(self.config, convert=CONVERTERS[self.method])

    def _encode(self):
        from datasets import Dataset  # defers pyarrow

        train_rows, val_rows = self.rows.train, self.rows.val
        if self.method == "kto":
            # TRL reads KTO data in order (each batch's KL term pairs its own rows); one seeded shuffle
            # keeps desirable and undesirable rows from arriving in separate batches.
            train_rows = list(train_rows)
            random.Random(self.config.data.data_seed).shuffle(train_rows)

        template = self.vision or self.template

        def encode():
            train, skipped = encode_for(self.method, train_rows, template, "--dataset")
            if not val_rows:
                return train, [], skipped, 0
            val, val_skipped = encode_for(self.method, val_rows, template, "--val_dataset")
            return train, val, skipped, val_skipped

        # rank 0 encodes, every rank trains on its rows (the trainer's sampler gives each its share)
        train, val, skipped, val_skipped = distributed.from_main(encode, self.ranks)
        steps.report_too_long(skipped, val_skipped, self.template)
        return Dataset.from_list(train), Dataset.from_list(val) if val else [], skipped + val_skipped

    def _reward_funcs(self) -> list:
        """Reward functions resolve by name before any weights load (a typo costs nothing)."""
        if self.method != "grpo" or not self.config.grpo.reward_funcs:
            return []
        return resolve_reward_funcs(self.host.registries.rewards, self.config.grpo.reward_funcs, self.config,
                                    describe=self.host.label)

    def _rollout_server(self):
        """With --use_vllm: colocated vLLM needs its package and a GPU (checked now); a rollout server must answer
        /health within --vllm_server_timeout. The server's client, or None when this process generates."""
        v = self.config.vllm_rollout
        if self.method not in ("grpo", "ppo") or not v.use_vllm:
            return None
        if v.vllm_mode == "colocate":
            require_colocated_vllm()
            return None
        client = RolloutClient(v.server_url, v.vllm_server_timeout)
        self.rollout_health = client.wait_until_up()
        steps.log(f"rlhf: rollouts from {client.url} ({self.rollout_health.get('model')}, "
                  f"{self.rollout_health.get('backend')})")
        return ServerRollouts(client)

    def _check_served_model(self) -> None:
        """The rollout server serves the model this run trains (architecture, sizes, vocabulary)."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        local = model_identity(base.config, self.tokenizer, base.get_input_embeddings().num_embeddings)
        self.rollouts.client.check_model(self.rollout_health, local)

    def _load_models(self):
        cfg, method = self.config, self.method
        model = steps.load_weights(self.resolved, cfg.model, cfg.training.seed, scalar_head=method == "rm",
                                   quantization=self.plan.quantization, liger=cfg.training.use_liger_kernel,
                                   vision=self.vision is not None)
        if method == "rm":
            model.config.pad_token_id = self.tokenizer.pad_token_id
        if method in ("grpo", "ppo"):
            # Generation stops at the template's end of turn, not only at the tokenizer's EOS.
            model.generation_config.eos_token_id = list(self.template.stop_token_ids)
            model.generation_config.pad_token_id = self.tokenizer.pad_token_id
        # every adapter tuner (not only lora) gives a reference by switching its adapters off: no copy
        tuner_kind = "lora" if cfg.tuner.train_type in ADAPTER_TUNERS else cfg.tuner.train_type
        starting_copy = (rlhf_models.freeze(copy.deepcopy(model))
                         if rlhf_models.uses_reference_copy(method, tuner_kind, cfg) else None)
        steps.enable_recompute(model, cfg.training)
        if self.adapter_ckpt is not None:
            model = steps.lean_activations(rlhf_models.continue_adapter(prepare_quantized(model), self.adapter_ckpt),
                                           cfg.training)
        else:
            model = steps.apply_tuner(self.host, cfg, model, self.plan.target_modules or list(cfg.tuner.target_modules))
        extra = rlhf_models.extra_models(method, cfg, self.host.registries, self.tokenizer, model,
                                         starting_copy=starting_copy, adapter_ckpt=self.adapter_ckpt)
        return model, extra

    def _write_records_and_build_trainer(self):
        """Write args.json and manifest.json; ``(trainer, its token counter)``."""
        from swiftkit.train.callbacks import CountingCollator  # defers transformers

        cfg, method, run_dir, extra = self.config, self.method, self.folder.path, self.extra
        if self.ranks.main:
            write_run_records(run_dir, cfg, self.plan, data_fingerprint=steps.rows_fingerprint(self.rows, cfg),
                              template=self.template)
        callbacks, counter = steps.record_callbacks(run_dir, f"the {method} loss",
                                                    {**PLOTS, **benchmark_plots(self.benchmarks)}, self.ranks)
        base = parts.training_arguments(cfg, run_dir, has_val=bool(self.val_data))
        args = method_config(method, base, cfg, max_length=self.template.max_length, precision=self._precision(),
                             chat_kwargs=self.template.chat_kwargs)
        # a vision-language model's checkpoints hold its processor too (image settings and chat template)
        processing = self.vision.processor if self.vision is not None else self.tokenizer
        kw = dict(model=self.model, args=args, train_dataset=self.train_data, eval_dataset=self.val_data or None,
                  processing_class=processing, callbacks=[*callbacks, *self.parts.callbacks, *self.trackers],
                  optimizers=(parts.build_optimizer(self.host, cfg, self.model), None))
        if method in ("dpo", "kto", "grpo"):
            kw["ref_model"] = extra.reference
            # a trained starting adapter: TRL's frozen copy of it is the reference
            kw["adapters_off_reference"] = self.adapter_ckpt is None
        if method == "grpo":
            kw["rollouts"] = self.rollouts
            if self.tokenizer.chat_template != self.template.chat_template:
                self.tokenizer.chat_template = self.template.chat_template  # TRL renders prompts with it
            kw["reward_funcs"] = [*self.reward_funcs, *([extra.reward] if extra.reward is not None else [])]
            if extra.reward is not None:
                kw["reward_processing_classes"] = [None] * len(self.reward_funcs) + [self.tokenizer]
        elif method == "ppo":
            kw.update(ref_model=extra.reference, reward_model=extra.reward, value_model=extra.value,
                      settings=self._ppo_settings(), rollouts=self.rollouts)
        trainer = trainer_class(method)(**kw)
        if self.vision is not None:  # the pixel features of the rows with images, made per batch
            trainer.data_collator = VisionPreferenceCollator(trainer.data_collator, self.vision)
        trainer.data_collator = CountingCollator(trainer.data_collator, counter,
                                                 count=lambda features: real_tokens(method, features))
        attach_benchmarks(trainer, self.benchmarks, cfg, self.template)
        return trainer, counter

    def _precision(self) -> dict:
        """--bf16/--fp16 when given; otherwise the weights' dtype (TRL's trainers compute in it)."""
        tr = self.config.training
        if self.config.is_given("bf16") or self.config.is_given("fp16"):
            return mixed_precision(tr.bf16, tr.fp16)
        return weights_precision(self.model)

    def _ppo_settings(self):
        from swiftkit.train.ppo import PPOSettings  # defers torch

        cfg = self.config
        p, o = cfg.ppo, cfg.rollout
        return PPOSettings(
            kl_coef=cfg.rlhf.beta_value, num_ppo_epochs=p.num_ppo_epochs, cliprange=o.cliprange,
            cliprange_value=p.cliprange_value, vf_coef=p.vf_coef, gamma=p.gamma, lam=p.lam,
            max_completion_length=o.max_completion_length, temperature=o.temperature,
            missing_eos_penalty=p.missing_eos_penalty, stop_token_ids=list(self.template.stop_token_ids),
            pad_token_id=self.tokenizer.pad_token_id,
        )

    # -- run ---------------------------------------------------------------------------------------

    def run(self) -> dict:
        if self.config.training.dry_run:
            dryrun.show(self.dry_run)
            return self.dry_run
        result = steps.train(self.trainer, self.folder, self.resume, self.counter)
        history = self.trainer.state.log_history
        signals = {}
        for key in SIGNALS:
            values = [h[key] for h in history if key in h and "train_runtime" not in h]
            if values:
                signals[key] = {"first": values[0], "last": values[-1]}
        result.update(rlhf_type=self.method, signals=signals)
        if not result.get("train_tokens"):
            result["train_tokens"] = result["train_tokens_per_s"] = None  # online methods: see logging.jsonl
        return steps.finish(self.folder, result)
