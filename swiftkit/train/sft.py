"""The SFT / PT recipe: ``setup()`` builds every part, ``run()`` is the one trainer call.

Nothing is written to the output directory until every input (model, data, template, plugins) has
been checked, so a bad flag or a bad row leaves no half-made run behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from swiftkit.choices import choose, unknown_choice
from swiftkit.config import PtConfig, SftConfig
from swiftkit.models import set_num_threads
from swiftkit.train.errors import TrainError



def _is_transformers_scheduler(name: str) -> bool:
    from transformers import SchedulerType

    return name in {s.value for s in SchedulerType}


class SftRecipe:
    """Supervised fine-tuning (``sft``) or continued pretraining (``pt``) with one config."""

    def __init__(self, cfg: SftConfig):
        self.cfg = cfg
        self.is_pt = isinstance(cfg, PtConfig)
        self.result: dict = {}

    # -- setup ----------------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        from swiftkit.plugins import build_registries, get_plugin_manager
        from swiftkit.templates.selection import load_tokenizer_and_template

        self.pm = get_plugin_manager(cfg.plugin.plugins, cfg.plugin.disable_plugins)
        self.registries = build_registries(self.pm)
        self.resume = self._resume_checkpoint()
        set_num_threads(cfg.model.num_threads)

        self.resolved, self.tokenizer, self.template = load_tokenizer_and_template(
            cfg.model, cfg.template, self.registries, pretrain=self.is_pt
        )
        train_rows, val_rows = self._load_rows()
        self.train_data, self.val_data, skipped = self._encode(train_rows, val_rows)
        self._check_parts()
        self.model = self._load_model()
        self.num_train_rows = None if train_rows is None else len(self.train_data)  # encoded, before packing
        self.train_data = self._pack()
        self.trainer_cls = self._choose_trainer()
        self.parts = self._plugin_parts()
        self._check_scheduler_name()
        self.run_dir = self.resume.parent if self.resume else self._new_run_dir()
        self._write_run_files(train_rows, val_rows, skipped)
        self.trainer = self._build_trainer()

    def _resume_checkpoint(self) -> Path | None:
        from swiftkit.train.output import resolve_resume

        path = self.cfg.training.resume_from_checkpoint
        if not path:
            return None
        ckpt = resolve_resume(path)
        args_file = ckpt.parent / "args.json"
        if not self.cfg.model.model:
            if not args_file.is_file():
                raise TrainError(f"{args_file} is missing: pass --model with --resume_from_checkpoint")
            self.cfg.model.model = json.loads(args_file.read_text())["model"]
        return ckpt

    def _data_kwargs(self) -> dict:
        d = self.cfg.data
        return dict(
            registry=self.registries.datasets, preprocessors=self.registries.preprocessors, seed=d.data_seed,
            model_name=tuple(d.model_name), model_author=tuple(d.model_author), use_hf=self.cfg.model.use_hf,
            cache_dir=self.cfg.model.cache_dir, text_only=self.is_pt, columns=d.column_map,
            skip_bad_rows=d.skip_bad_rows,
        )

    def _load_rows(self):
        """``(train rows, validation rows)``; train rows are None with --streaming (read while training)."""
        from swiftkit.data import load_rows, split_rows
        from swiftkit.data.loader import LoadReport

        d = self.cfg.data
        report, val_report = LoadReport(), LoadReport()
        train = None if d.streaming else load_rows(d.dataset, report=report, **self._data_kwargs())
        val = load_rows(d.val_dataset, report=val_report, **self._data_kwargs()) if d.val_dataset else []
        for what, rep in (("--dataset", report), ("--val_dataset", val_report)):
            if rep.skipped:
                print(f"[swiftkit] --skip_bad_rows: {what}: {rep.summary()}", file=sys.stderr)
        self.bad_rows_skipped = len(report.skipped) + len(val_report.skipped)
        if train is not None and not d.val_dataset and d.split_dataset_ratio > 0:
            return split_rows(train, d.split_dataset_ratio, seed=d.data_seed)
        return train, val

    def _stream(self):
        """A fresh iterator over the streamed --dataset rows (one per pass over the data)."""
        from swiftkit.data.loader import LoadReport
        from swiftkit.data.streaming import stream_rows

        self.stream_report = LoadReport()
        return stream_rows(self.cfg.data.dataset, report=self.stream_report, **self._data_kwargs())

    def _encode(self, train_rows, val_rows):
        from swiftkit.train.encode import StreamingEncodedDataset, encode_dataset

        d = self.cfg.data
        cache_dir = Path(self.cfg.model.cache_dir).expanduser() / "encoded" if self.cfg.model.cache_dir else None
        kw = dict(num_proc=d.dataset_num_proc, use_cache=d.load_from_cache_file, cache_dir=cache_dir)
        if train_rows is None:
            self._stream()  # resolves every source now: an unknown dataset fails before weights load
            train, skipped = StreamingEncodedDataset(self._stream, self.template), 0
        else:
            train, skipped = encode_dataset(train_rows, self.template, what="--dataset", lazy=d.lazy_tokenize, **kw)
        val, val_skipped = encode_dataset(val_rows, self.template, what="--val_dataset", **kw) if val_rows else ([], 0)
        if skipped or val_skipped:
            print(
                f"[swiftkit] skipped {skipped} training and {val_skipped} validation rows longer than "
                f"--max_length {self.template.max_length}",
                file=sys.stderr,
            )
        return train, val, skipped + val_skipped

    def _check_parts(self) -> None:
        """Resolve what a recipe selects by name before weights load (none for sft/pt)."""

    def _pack(self):
        """--packing: bin-pack the encoded rows, when the model keeps packed samples apart."""
        from swiftkit.train.packing import pack_rows, packing_is_exact

        if not self.cfg.training.packing:
            return self.train_data
        if not packing_is_exact(self.model):
            print("[swiftkit] this model's attention does not keep packed samples apart (checked with a "
                  "probe); training without --packing", file=sys.stderr)
            self.cfg.training.packing = False
            return self.train_data
        packed = pack_rows(self.train_data, self.template.max_length)
        print(f"[swiftkit] --packing: {len(self.train_data)} rows in {len(packed)} rows of up to "
              f"{self.template.max_length} tokens", file=sys.stderr)
        return packed

    def _load_model(self):
        from transformers import set_seed

        from swiftkit.models import load_model

        m, t = self.cfg.model, self.cfg.tuner
        self._registry_lora_targets()
        set_seed(self.cfg.training.seed)  # before the tuner initialises adapter weights
        model = load_model(self.resolved, torch_dtype=m.torch_dtype, trust_remote_code=m.trust_remote_code)
        if self.cfg.training.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        return choose(self.pm, "tuner", t.train_type, model=model, config=self.cfg)

    def _registry_lora_targets(self) -> None:
        """Default --target_modules: the LoRA targets the registry gives the model type, if any."""
        t, entry = self.cfg.tuner, self.resolved.entry
        if t.target_modules == ["all-linear"] and entry is not None and entry.lora_target_modules:
            t.target_modules = list(entry.lora_target_modules)  # the model type needs these
            print(f"[swiftkit] model type {entry.type}: LoRA on {', '.join(t.target_modules)}", file=sys.stderr)

    def _choose_trainer(self):
        return choose(self.pm, "trainer", self.cfg.training.trainer, config=self.cfg)

    def _check_scheduler_name(self) -> None:
        """Fail before anything is written when no plugin nor transformers knows the schedule."""
        name = self.cfg.training.lr_scheduler_type
        if _is_transformers_scheduler(name):
            return
        import torch

        probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        choose(self.pm, "lr_scheduler", name, optimizer=probe, num_training_steps=1, config=self.cfg)

    def _new_run_dir(self) -> Path:
        from swiftkit.train.output import new_run_dir

        return new_run_dir(self.cfg.training.output_dir)

    def _write_run_files(self, train_rows, val_rows, skipped) -> None:
        from swiftkit.data import data_fingerprint
        from swiftkit.train.output import build_manifest, write_json

        args = {"command": self.cfg.command, **self.cfg.to_flat(), "model_path": self.resolved.path,
                "template_name": self.template.name}
        write_json(self.run_dir / "args.json", args)
        manifest = build_manifest(
            seed=self.cfg.training.seed,
            # a stream is not read ahead: its fingerprint covers the specs that name it
            data_fingerprint=data_fingerprint(
                (train_rows if train_rows is not None else [{"streaming": list(self.cfg.data.dataset)}]) + val_rows
            ),
            template_fingerprint=self.template.fingerprint,
            template_name=self.template.name,
            num_train_rows=self.num_train_rows,
            num_val_rows=len(self.val_data),
            skipped_rows=skipped,
            bad_rows_skipped=self.bad_rows_skipped,
            model_path=self.resolved.path,
        )
        write_json(self.run_dir / "manifest.json", manifest)

    def _plugin_parts(self):
        """Loss, metrics, optimizer and extra callbacks selected by name through the hooks."""
        tr, pm, cfg = self.cfg.training, self.pm, self.cfg
        loss = choose(pm, "loss", tr.loss_type, config=cfg) if tr.loss_type else None
        metrics = choose(pm, "metrics", tr.metric, config=cfg) if tr.metric else None
        optimizer = choose(pm, "optimizer", tr.optimizer, model=self.model, config=cfg) if tr.optimizer else None
        callbacks = [choose(pm, "callback", name, config=cfg) for name in tr.callbacks]
        return loss, metrics, optimizer, callbacks

    def _training_arguments(self):
        from transformers import TrainingArguments

        return TrainingArguments(**self._training_kwargs())

    def _training_kwargs(self) -> dict:
        """The TrainingArguments fields every recipe shares (TRL's configs extend the same class)."""
        tr = self.cfg.training
        has_val = bool(self.val_data)
        return dict(
            output_dir=str(self.run_dir),
            num_train_epochs=tr.num_train_epochs,
            max_steps=tr.max_steps,
            learning_rate=tr.learning_rate,
            # A plugin's schedule name is unknown to transformers; the hook supplies the scheduler.
            lr_scheduler_type=tr.lr_scheduler_type if _is_transformers_scheduler(tr.lr_scheduler_type) else "constant",
            warmup_steps=tr.warmup_ratio,  # transformers 5: a float below 1 is a ratio of all steps
            weight_decay=tr.weight_decay,
            max_grad_norm=tr.max_grad_norm,
            per_device_train_batch_size=tr.per_device_train_batch_size,
            per_device_eval_batch_size=tr.per_device_eval_batch_size,
            gradient_accumulation_steps=tr.gradient_accumulation_steps,
            save_strategy="steps",
            save_steps=tr.save_steps,
            save_total_limit=tr.save_total_limit,
            eval_strategy="steps" if has_val else "no",
            eval_steps=(tr.eval_steps or tr.save_steps) if has_val else None,
            logging_steps=tr.logging_steps,
            logging_first_step=True,
            seed=tr.seed,
            data_seed=self.cfg.data.data_seed,
            report_to=[r for r in tr.report_to if r != "none"] or "none",
            dataloader_num_workers=tr.dataloader_num_workers,
            remove_unused_columns=False,
            dataloader_pin_memory=False,
        )

    def _padding_free(self) -> bool:
        from swiftkit.train.packing import packing_is_exact

        if not self.cfg.training.padding_free:
            return False
        if packing_is_exact(self.model):
            return True
        print(
            "[swiftkit] this model's attention does not keep packed sequences apart (checked with a "
            "probe); training with padded batches instead of --padding_free",
            file=sys.stderr,
        )
        return False

    def _run_callbacks(self, plugin_callbacks, plots=None) -> list:
        """The callbacks that write the run's records (logging.jsonl with real-token counts, plots,
        args.json per checkpoint), then the plugins' callbacks; sets ``self.counter``."""
        from swiftkit.train.callbacks import JsonlLoggingCallback, RunFilesCallback, TokenCounter

        self.counter = TokenCounter()
        return [JsonlLoggingCallback(self.run_dir / "logging.jsonl", self.counter),
                RunFilesCallback(self.run_dir, plots), *plugin_callbacks]

    def _build_trainer(self):
        from swiftkit.train.callbacks import CountingCollator
        from swiftkit.train.encode import make_collator

        loss, metrics, optimizer, callbacks = self.parts
        callbacks = self._run_callbacks(callbacks)
        packed = self.cfg.training.packing
        # Packed rows are already full: one row per bin (a flattened batch would make attention
        # quadratic in the whole batch's tokens on backends without variable-length kernels).
        padding_free = False if packed else self._padding_free()
        collator = CountingCollator(make_collator(self.tokenizer, padding_free, packed=packed), self.counter)
        trainer = self.trainer_cls(
            model=self.model,
            args=self._training_arguments(),
            data_collator=collator,
            train_dataset=self.train_data,
            eval_dataset=self.val_data or None,
            processing_class=self.tokenizer,
            compute_loss_func=loss,
            compute_metrics=metrics,
            callbacks=callbacks,
            optimizers=(optimizer, None),
        )
        if hasattr(trainer, "scheduler_factory"):
            name, cfg, pm = self.cfg.training.lr_scheduler_type, self.cfg, self.pm

            def factory(opt, steps):
                sched = pm.hook.swiftkit_get_lr_scheduler(name=name, optimizer=opt, num_training_steps=steps, config=cfg)
                if sched is None and not _is_transformers_scheduler(name):
                    raise unknown_choice(pm, "lr_scheduler", name)
                return sched

            trainer.scheduler_factory = factory
        return trainer

    # -- run ------------------------------------------------------------------------------------

    def run(self) -> dict:
        from swiftkit.train.callbacks import peak_rss_mb
        from swiftkit.train.output import checkpoints, write_json

        output = self.trainer.train(resume_from_checkpoint=str(self.resume) if self.resume else None)
        last = checkpoints(self.run_dir)[-1] if checkpoints(self.run_dir) else None
        self.result = {
            "run_dir": str(self.run_dir),
            "last_checkpoint": str(last) if last else None,
            "global_step": output.global_step,
            "train_loss": output.training_loss,
            "train_runtime_s": output.metrics.get("train_runtime"),
            "train_tokens": self.counter.tokens,
            "train_tokens_per_s": round(self.counter.tokens / output.metrics["train_runtime"], 2)
            if output.metrics.get("train_runtime") else None,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "loss_plot": str(self.run_dir / "loss.png"),
        }
        write_json(self.run_dir / "train_result.json", self.result)
        print(f"[swiftkit] run finished: {json.dumps(self.result)}", file=sys.stderr)
        return self.result


def run_training(cfg: SftConfig) -> dict:
    """Build and run the recipe for an ``sft`` or ``pt`` config."""
    recipe = SftRecipe(cfg)
    recipe.setup()
    return recipe.run()

