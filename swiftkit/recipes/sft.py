"""The ``sft`` / ``pt`` recipe: ``setup()`` lists its steps, ``run()`` is the one trainer call.

Nothing is written to the output directory until every input (model, data, template, the parts
plugins supply) has been checked, so a bad flag or a bad row leaves no run folder behind; a run
that fails before its first optimizer step removes the folder it made.
"""

from __future__ import annotations

from pathlib import Path

from swiftkit.config import PtConfig, SftConfig
from swiftkit.core import distributed
from swiftkit.data.encode import encode_dataset
from swiftkit.data.streaming import stream_rows
from swiftkit.models import set_num_threads
from swiftkit.recipes import dryrun, parts, steps
from swiftkit.recipes.records import write_run_records
from swiftkit.recipes.train_benchmarks import attach_benchmarks, benchmark_plots, prepare_benchmarks
from swiftkit.templates.selection import load_tokenizer_and_template
from swiftkit.train.collate import make_collator
from swiftkit.train.errors import TrainError
from swiftkit.train.generate_eval import generation_eval
from swiftkit.train.packing import pack_rows, packing_is_exact


class SftRecipe:
    """Supervised fine-tuning (``sft``) or continued pretraining (``pt``) with one config."""

    def __init__(self, config: SftConfig, host):
        self.config = config
        self.host = host
        self.pretrain = isinstance(config, PtConfig)

    def setup(self) -> None:
        self.config, data_inherited = steps.resume_data_args(self.config)  # --load_data_args
        cfg, host = self.config, self.host
        self.ranks = steps.join_ranks(cfg.training)  # one process group when a launcher started several
        self.resume, inherited = steps.resume_point(cfg)
        inherited = {**data_inherited, **inherited}
        set_num_threads(cfg.model.num_threads)
        model_args = steps.with_settings(cfg.model, inherited)
        self.resolved, self.tokenizer, self.template = load_tokenizer_and_template(
            model_args, cfg.template, host.registries, pretrain=self.pretrain)
        self.rows = steps.load_training_rows(cfg, host.registries, self._data_options())
        # rows with images: the template plus the model's processor, encoding as the trainer reads each row
        self.vision = steps.vision_encoder(self.resolved, cfg, self.template, (self.rows.train, self.rows.val))
        with distributed.main_first(self.ranks):  # rank 0 encodes into the cache the other ranks then read
            self.train_data, self.val_data, too_long = self._encode()
        self.parts = parts.choose_training_parts(host, cfg)
        self.benchmarks = prepare_benchmarks(cfg, host)  # --eval_benchmarks: loaded now, scored at evaluations
        self.trackers = parts.tracker_callbacks(cfg)
        self.plan = steps.new_plan(
            cfg, model_args=model_args, resolved=self.resolved, template=self.template, rows=self.rows,
            num_train_rows=None if self.rows.train is None else len(self.train_data),
            num_val_rows=len(self.val_data), rows_too_long=too_long, resume=self.resume, inherited=inherited)
        if cfg.training.dry_run:  # the plan without weights or a run folder; run() returns it
            self.dry_run = dryrun.sft_plan(
                host, cfg, command=cfg.command, resolved=self.resolved, template=self.template, rows=self.rows,
                train_data=self.train_data, val_data=self.val_data, too_long=too_long, run_plan=self.plan,
                vision=self.vision is not None)
            return
        self.model = self._load_model()
        self.train_data, self.plan.packing, self.plan.padding_free = self._pack()
        self.folder = steps.open_run_folder(cfg.training.output_dir, self.resume, self.ranks)
        self.trainer, self.counter = steps.built_or_discarded(self.folder, self._write_records_and_build_trainer)

    # -- steps -------------------------------------------------------------------------------------

    def _data_options(self) -> dict:
        return steps.data_options(self.config, text_only=self.pretrain)

    def _stream(self):
        """A fresh iterator over the streamed --dataset rows (one per pass over the data)."""
        return stream_rows(self.config.data.dataset, registries=self.host.registries, **self._data_options())

    def _encode(self):
        """``(train, val, rows skipped as longer than --max_length)``, encoded with the template."""
        from swiftkit.data.datasets import LazyEncodedDataset, StreamingEncodedDataset  # defers torch

        cfg, rows = self.config, self.rows
        d = cfg.data
        cache_dir = Path(cfg.model.cache_dir).expanduser() / "encoded" if cfg.model.cache_dir else None
        kw = dict(num_proc=d.dataset_num_proc, use_cache=d.load_from_cache_file, cache_dir=cache_dir)
        if self.vision is not None:  # pixel features are made per batch, not cached
            train = LazyEncodedDataset(rows.train, self.vision, "--dataset")
            val = LazyEncodedDataset(rows.val, self.vision, "--val_dataset") if rows.val else []
            return train, val, 0
        if rows.train is None:
            self._stream()  # resolves every source now: an unknown dataset fails before weights load
            train, skipped = StreamingEncodedDataset(self._stream, self.template), 0
        elif d.lazy_tokenize:  # encoded as the trainer reads each row; over-long rows are replaced then
            train, skipped = LazyEncodedDataset(rows.train, self.template, "--dataset"), 0
        else:
            train, skipped = encode_dataset(rows.train, self.template, what="--dataset", **kw)
        val, val_skipped = encode_dataset(rows.val, self.template, what="--val_dataset", **kw) if rows.val else ([], 0)
        steps.report_too_long(skipped, val_skipped, self.template)
        return train, val, skipped + val_skipped

    def _load_model(self):
        cfg = self.config
        model = steps.load_weights(self.resolved, cfg.model, cfg.training.seed, quantization=self.plan.quantization,
                                   liger=cfg.training.use_liger_kernel, vision=self.vision is not None)
        steps.enable_recompute(model, cfg.training)
        return steps.apply_tuner(self.host, cfg, model, self.plan.target_modules or list(cfg.tuner.target_modules),
                                 data_pass=lambda: steps.init_batches(self.train_data, self.tokenizer))

    def _pack(self):
        """``(train data, packing, padding_free)``: --packing (bin-pack encoded rows) and --padding_free
        as used, which needs a model that keeps packed samples apart (checked with a probe)."""
        tr = self.config.training
        if self.vision is not None:  # rows with images train in padded batches (steps.vision_encoder)
            return self.train_data, False, False
        exact = (tr.packing or tr.padding_free) and packing_is_exact(self.model)
        if (tr.packing or tr.padding_free) and not exact:
            steps.log("this model's attention does not keep packed sequences apart (checked with a probe); "
                      "training with padded batches, without --packing/--padding_free")
        packing = tr.packing and exact
        padding_free = tr.padding_free and exact and not packing  # packed rows are already full
        if not packing:
            return self.train_data, packing, padding_free
        packed = pack_rows(self.train_data, self.template.max_length)
        steps.log(f"--packing: {len(self.train_data)} rows in {len(packed)} rows of up to "
                  f"{self.template.max_length} tokens")
        return packed, packing, padding_free

    def _write_records_and_build_trainer(self):
        """Write args.json and manifest.json; ``(trainer, its token counter)``."""
        from transformers import TrainingArguments  # defers transformers

        from swiftkit.train.callbacks import CountingCollator  # defers transformers
        from swiftkit.train.trainer import SwiftTrainer  # defers transformers

        cfg, plan, run_dir = self.config, self.plan, self.folder.path
        if self.ranks.main:
            write_run_records(run_dir, cfg, plan, data_fingerprint=steps.rows_fingerprint(self.rows, cfg),
                              template=self.template)
        callbacks, counter = steps.record_callbacks(run_dir, self.parts.loss_label, benchmark_plots(self.benchmarks),
                                                    self.ranks)
        # Packed rows are already full: one row per bin (a flattened batch would make attention
        # quadratic in the whole batch's tokens on backends without variable-length kernels).
        collator = make_collator(self.tokenizer, plan.padding_free, packed=plan.packing, vision=self.vision is not None)
        # --predict_with_generate: the metric scores generated replies (GenerationEval), not the eval logits
        generate = cfg.callback.predict_with_generate and self.parts.metrics is not None
        if generate and not issubclass(self.parts.trainer_cls, SwiftTrainer):
            raise TrainError(f"--predict_with_generate needs swiftkit's trainer; --trainer {cfg.training.trainer} "
                             "does not derive from swiftkit.train.trainer.SwiftTrainer")
        metrics = None if generate else self.parts.metrics

        trainer = self.parts.trainer_cls(
            model=self.model,
            args=TrainingArguments(**parts.training_arguments(cfg, run_dir, has_val=bool(self.val_data))),
            data_collator=CountingCollator(collator, counter),
            train_dataset=self.train_data,
            eval_dataset=self.val_data or None,
            # a vision-language model's checkpoints hold its processor too (image settings and chat template)
            processing_class=self.vision.processor if self.vision is not None else self.tokenizer,
            compute_loss_func=self.parts.loss,
            compute_metrics=metrics,
            preprocess_logits_for_metrics=getattr(metrics, "preprocess_logits_for_metrics", None),
            callbacks=[*callbacks, *self.parts.callbacks, *self.trackers],
            optimizers=(parts.build_optimizer(self.host, cfg, self.model), None),
        )
        if isinstance(trainer, SwiftTrainer):  # a plugin's trainer class need not derive from it
            trainer.loss_label = self.parts.loss_label
            trainer.scheduler_factory = parts.scheduler_factory(self.host, cfg)
        if generate:
            trainer.generation_eval = generation_eval(self.template, self.rows.val, self.parts.metrics,
                                                      cfg.training.per_device_eval_batch_size)
        attach_benchmarks(trainer, self.benchmarks, cfg, self.template)
        return trainer, counter

    # -- run ---------------------------------------------------------------------------------------

    def run(self) -> dict:
        if self.config.training.dry_run:
            dryrun.show(self.dry_run)
            return self.dry_run
        return steps.finish(self.folder, steps.train(self.trainer, self.folder, self.resume, self.counter))
