"""Hook specifications: every extension point of swiftkit.

Plugins implement these with ``@swiftkit.hookimpl``. Built-in behaviour is registered through the
same hooks (see ``swiftkit.commands.BUILTIN_PLUGIN_MODULES``), so a third-party plugin can do anything a
built-in does.

Two kinds of hooks:

* **Registration hooks** are called once per plugin, in load order (built-ins, entry points by
  name, ``--plugins`` files), when a command first needs its registries; a plugin registered later
  is called when it is registered. A plugin adds entries with
  ``registry.register(name, entry, source=...)``; re-registering a name needs ``override=True``.
* **Choice hooks** are *firstresult*: swiftkit asks for the part selected by name in the config
  (e.g. ``--loss_type focal``); each plugin answers ``None`` unless the name is its own, and the
  first non-``None`` answer wins. Plugins are asked in pluggy's order: the last loaded first.

``config`` is the command's frozen config object: its attributes are flag groups
(``config.training.learning_rate`` is ``--learning_rate``), plus ``config.plugin_options`` (the
values of flags plugins declare), ``config.given`` (the flags the user set) and
``config.command``. docs/reference/config.md lists every group and field of every command.

An exception raised inside a hook (or inside what it returns: a loss, a callback, a reward, a
benchmark, an exporter) stops the command with one line naming the plugin, its package and the
hook; a :class:`swiftkit.core.errors.SwiftkitError` (e.g. ``ConfigError`` naming a flag) is shown
as it is. ``--debug`` prints the traceback.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("swiftkit")
hookimpl = pluggy.HookimplMarker("swiftkit")  # also ``swiftkit.hookimpl``: what plugins decorate with


# --- registration hooks (once per plugin) ------------------------------------------------------


@hookspec
def swiftkit_register_models(registry):
    """Add model families to the model registry.

    Called once per plugin, in load order (see :mod:`swiftkit.core.plugins`).

    :param swiftkit.core.registry.Registry registry: the model registry; entries are
        :class:`swiftkit.models.registry.ModelEntry`.
    :return: ignored.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_register_models(registry):
            from swiftkit.models.registry import ModelEntry
            registry.register("my-model-7b", ModelEntry(name="my-model-7b", hf_id="me/my-model-7b"),
                              source="my_plugin")
    """


@hookspec
def swiftkit_register_datasets(registry):
    """Add datasets to the dataset registry.

    Called once per plugin, in load order (see :mod:`swiftkit.core.plugins`).

    :param swiftkit.core.registry.Registry registry: the dataset registry; entries are
        :class:`swiftkit.data.registry.DatasetEntry`.
    :return: ignored.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_register_datasets(registry):
            from swiftkit.data.registry import DatasetEntry
            registry.register("my-data", DatasetEntry(name="my-data", path="/data/my.jsonl"),
                              source="my_plugin")
    """


@hookspec
def swiftkit_register_preprocessors(registry):
    """Add dataset row preprocessors that dataset cards select with ``preprocessor: NAME``.

    Called once per plugin, in load order (see :mod:`swiftkit.core.plugins`). Preprocessors are
    registered before datasets, and every registered dataset's preprocessor must exist once all
    plugins have registered (else an error names the dataset and where it came from).

    :param swiftkit.core.registry.Registry registry: the preprocessor registry; entries are callables
        ``fn(rows, *, model_name, model_author, source) -> rows`` taking the raw rows of one
        dataset (after column renaming, before format detection) and returning new raw rows.
    :return: ignored.

    Use in plugins::

        def lowercase(rows, *, model_name=(), model_author=(), source=""):
            return [{**r, "query": r["query"].lower()} for r in rows]

        @swiftkit.hookimpl
        def swiftkit_register_preprocessors(registry):
            registry.register("lowercase", lowercase, source="my_plugin")
    """


@hookspec
def swiftkit_register_benchmarks(registry):
    """Add evaluation benchmarks that ``--eval_dataset`` / ``--eval_benchmarks`` select by name.

    Called once per plugin, in load order (see :mod:`swiftkit.core.plugins`). A benchmark card says
    where the data lives (hub ids, subsets, split), its native layout (which fixes how an item is
    read and scored: ``mmlu``, ``ceval``, ``arc``, ``hellaswag``, ``truthfulqa_mc1``, ``piqa``,
    ``winogrande``, ``gsm8k``, ``math``, ``qa``, ``text``, ``reference``, ``humaneval``, ``mbpp``) and
    its prompt and metric; swiftkit's own evaluators then run it, natively or over ``--eval_url``.
    ``swiftkit list benchmarks`` shows every entry. (A benchmark with scoring of its own is a
    ``swiftkit_get_eval_benchmark`` answer instead.)

    :param swiftkit.core.registry.Registry registry: the benchmark registry; entries are
        :class:`swiftkit.evaluate.cards.BenchmarkCard`.
    :return: ignored.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_register_benchmarks(registry):
            from swiftkit.evaluate.cards import BenchmarkCard
            registry.register("my-mcq", BenchmarkCard(name="my-mcq", layout="ceval", few_shot=0),
                              source="my_plugin")
    """


@hookspec
def swiftkit_register_reward_funcs(registry):
    """Add reward functions that GRPO selects by name with ``--reward_funcs``.

    Called once per plugin, in load order (see :mod:`swiftkit.core.plugins`). ``swiftkit list rewards``
    shows each entry with the first line of its docstring.

    :param swiftkit.core.registry.Registry registry: the reward registry. An entry is either

        * a function ``fn(prompts, completions, **columns) -> list[float | None]``, called as TRL's
          GRPO trainer calls rewards: keyword arguments ``prompts``, ``completions`` (strings, or
          lists of messages for conversational data: :func:`swiftkit.train.rewards.completion_text`
          gives the reply), ``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric``
          and every other dataset column (e.g. ``solution``) as a list with one value per
          completion. It returns one finite float per completion, or ``None`` where it does not
          apply; anything else stops training with an error naming the reward;
        * or a class: a factory built once per run as ``cls(config)`` with the
          :class:`swiftkit.config.RlhfConfig` (flags such as ``config.grpo.format_pattern``, or
          ``config.plugin_options`` for the plugin's own), whose instances are such functions.

        The trainer sees each reward under its registered name (metrics ``rewards/NAME/mean``).
    :return: ignored.

    Use in plugins::

        def brevity(prompts, completions, **columns):
            '''Shorter replies score higher.'''
            return [-len(c) / 100 for c in completions]

        class Keyword:
            '''1.0 when the reply contains --keyword.'''
            def __init__(self, config):
                self.word = config.plugin_options["keyword"]
            def __call__(self, prompts, completions, **columns):
                return [float(self.word in c) for c in completions]

        @swiftkit.hookimpl
        def swiftkit_register_reward_funcs(registry):
            registry.register("brevity", brevity, source="my_plugin")
            registry.register("keyword", Keyword, source="my_plugin")
    """


@hookspec
def swiftkit_register_templates(registry):
    """Add chat templates for models whose tokenizer has none (or a broken one).

    Called once per plugin, in load order (see :mod:`swiftkit.core.plugins`).

    :param swiftkit.core.registry.Registry registry: the template registry; entries are
        :class:`swiftkit.templates.registry.TemplateEntry`.
    :return: ignored.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_register_templates(registry):
            from swiftkit.templates.registry import TemplateEntry
            registry.register("my-format", TemplateEntry(name="my-format", chat_template=JINJA),
                              source="my_plugin")
    """


# --- configuration -----------------------------------------------------------------------------


@hookspec
def swiftkit_add_config_fields(command):
    """Declare config fields (CLI flags) the plugin needs, so it is configured like swiftkit itself.

    Called for every plugin when a command's config is built (also for ``--help``); all answers
    are collected. A name that clashes with a built-in flag or another plugin's field is an error
    naming both.

    :param str command: the command being configured (``"sft"``, ``"pt"``, ``"infer"``).
    :return: a list of :class:`swiftkit.config.plugin_fields.PluginField` (``name``, ``type``,
        ``default``, ``help``, optional ``choices`` and ``commands``); the values reach the plugin
        as ``config.plugin_options[name]`` and are saved in ``args.json``.

    Use in plugins::

        from swiftkit.config.plugin_fields import PluginField

        @swiftkit.hookimpl
        def swiftkit_add_config_fields(command):
            return [PluginField("focal_gamma", float, 2.0, "Focusing exponent of the focal loss.",
                                commands=("sft", "pt"))]
    """


# --- choice hooks (firstresult) ----------------------------------------------------------------


@hookspec
def swiftkit_choice_names(kind):
    """Name the choices this plugin answers for one choice hook, so errors and listings can show them.

    Called for every plugin; all answers are collected. swiftkit asks when a selected name is
    unknown (the error lists every valid name) and for ``swiftkit plugins list``. A plugin that
    answers a choice hook for a name should list that name here.

    :param str kind: which choice: ``"tuner"``, ``"loss"``, ``"metrics"``, ``"optimizer"``,
        ``"lr_scheduler"``, ``"callback"``, ``"trainer"``, ``"infer_engine"``,
        ``"eval_benchmark"`` or ``"export_format"``.
    :return: a list of names (empty or ``None`` when the plugin offers none of this kind).

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_choice_names(kind):
            return ["focal"] if kind == "loss" else []
    """


@hookspec(firstresult=True)
def swiftkit_get_tuner(name, model, config):
    """Wrap ``model`` for training with the tuner called ``name`` (``--train_type``).

    Firstresult: the first plugin that returns a model wins; answer ``None`` for other names.

    :param str name: the selected tuner, e.g. ``"lora"``, ``"full"``, ``"freeze"``.
    :param model: the loaded ``transformers`` model.
    :param config: the command's config (:class:`swiftkit.config.SftConfig`); tuner flags are in
        ``config.tuner``.
    :return: the model to train (e.g. a ``peft.PeftModel``), or ``None``.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_get_tuner(name, model, config):
            if name != "bias-only":
                return None
            for pname, p in model.named_parameters():
                p.requires_grad = pname.endswith(".bias")
            return model
    """


@hookspec(firstresult=True)
def swiftkit_get_loss(name, config):
    """Return the loss function selected by ``--loss_type``.

    Firstresult: answer ``None`` unless ``name`` is yours.

    :param str name: the selected loss name.
    :param config: the command's config (``sft`` / ``pt``).
    :return: a callable ``loss(outputs, labels, num_items_in_batch=None) -> torch.Tensor`` (the
        ``compute_loss_func`` contract of ``transformers.Trainer``; ``labels`` are unshifted, -100 is
        ignored), or ``None`` to keep the model's own loss. What it sees: ``outputs.logits`` are the
        full logits ``[batch, tokens, vocab]`` (the label-only head of the default loss is off);
        with ``--padding_free`` (the default) a batch is one row ``[1, tokens]`` holding every
        sequence of the batch joined, each starting at ``position_ids`` 0 with its first label
        -100, so a loss over shifted labels never crosses from one sequence into the next; with
        ``--packing`` each row is a bin of whole sequences marked the same way. A loss that
        returns NaN or inf stops the run at that step, before the update, naming the loss and
        this plugin.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_get_loss(name, config):
            if name == "focal":
                return focal_loss
    """


@hookspec(firstresult=True)
def swiftkit_get_metrics(name, config):
    """Return the evaluation metric function selected by ``--metric``.

    Firstresult: answer ``None`` unless ``name`` is yours.

    :param str name: the selected metric name.
    :param config: the command's config.
    :return: a ``compute_metrics(eval_pred) -> dict`` callable as ``transformers.Trainer`` takes it,
        or ``None``.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_get_metrics(name, config):
            if name == "token_acc":
                return token_accuracy
    """


@hookspec(firstresult=True)
def swiftkit_get_optimizer(name, model, config):
    """Build the optimizer selected by ``--optimizer``.

    Firstresult: answer ``None`` unless ``name`` is yours.

    :param str name: the selected optimizer name. Declare it in ``swiftkit_choice_names("optimizer")``:
        the optimizer is built after the weights load, so the name is checked against the declared
        names before (a typo costs nothing).
    :param model: the model being trained (only parameters with ``requires_grad`` should train).
    :param config: the command's config; learning rate and weight decay are in ``config.training``.
    :return: a ``torch.optim.Optimizer`` (the LR schedule stays ``--lr_scheduler_type``), or ``None``.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_get_optimizer(name, model, config):
            if name == "sgd":
                params = [p for p in model.parameters() if p.requires_grad]
                return torch.optim.SGD(params, lr=config.training.learning_rate)
    """


@hookspec(firstresult=True)
def swiftkit_get_lr_scheduler(name, optimizer, num_training_steps, config):
    """Build the learning-rate scheduler selected by ``--lr_scheduler_type``.

    Firstresult: answer ``None`` unless ``name`` is yours; with no answer, the name is passed to
    ``transformers`` (``linear``, ``cosine``, ...).

    :param str name: the selected scheduler name.
    :param optimizer: the optimizer the schedule drives.
    :param int num_training_steps: total optimizer steps of the run.
    :param config: the command's config.
    :return: a ``torch.optim.lr_scheduler.LRScheduler``, or ``None``.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_get_lr_scheduler(name, optimizer, num_training_steps, config):
            if name == "step_half":
                return torch.optim.lr_scheduler.StepLR(optimizer, num_training_steps // 2, 0.5)
    """


@hookspec(firstresult=True)
def swiftkit_get_callback(name, config):
    """Build the trainer callback called ``name`` (one call per name in ``--callbacks``).

    Firstresult: answer ``None`` unless ``name`` is yours.

    :param str name: one selected callback name.
    :param config: the command's config. ``config.training.output_dir`` is the ``--output_dir``
        root; the run's own folder ``OUTPUT_DIR/v{N}-{timestamp}/`` (where checkpoints,
        ``args.json`` and ``logging.jsonl`` go) is ``args.output_dir`` in the callback's events.
    :return: a ``transformers.TrainerCallback`` instance, or ``None``.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_get_callback(name, config):
            if name == "patience_3":
                return transformers.EarlyStoppingCallback(early_stopping_patience=3)
    """


@hookspec(firstresult=True)
def swiftkit_get_trainer(name, config):
    """Return the trainer class selected by ``--trainer``.

    Firstresult: answer ``None`` unless ``name`` is yours.

    :param str name: the selected trainer name (``"default"`` is
        :class:`swiftkit.train.trainer.SwiftTrainer`, a ``transformers.Trainer``).
    :param config: the command's config.
    :return: a class constructed like ``transformers.Trainer`` (same keyword arguments), or ``None``.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_get_trainer(name, config):
            if name == "mine":
                return MyTrainer   # subclass transformers.Trainer one level deep at most
    """


@hookspec(firstresult=True)
def swiftkit_get_infer_engine(name, model, template, config):
    """Build the inference engine selected by ``--infer_backend``.

    Firstresult: answer ``None`` unless ``name`` is yours.

    :param str name: the selected backend (``"transformers"`` is built in).
    :param model: the loaded model (adapters applied), or ``None`` for engines that load their own.
    :param template: the :class:`swiftkit.templates.Template` prompts must be encoded with.
    :param config: the command's config (``infer``, ``eval`` or ``deploy``).
    :return: an engine meeting the protocol of the command, or ``None``:
        :class:`swiftkit.inference.base.ReplyEngine` (``generate(conversations, **generation) ->
        list[str]`` and ``stream(messages, **generation) -> Iterator[str]``) for ``infer`` and
        ``eval`` (an engine other than ``transformers`` runs eval's generative benchmarks only),
        :class:`swiftkit.inference.base.InferEngine` (served models, token-level ``generate_ids`` /
        ``stream_ids``, and for ``/v1/completions`` with ``echo`` + ``logprobs``:
        ``supports_prompt_logprobs``, ``text_offsets``, ``prompt_logprobs``) for ``deploy``. A missing
        member is an error naming it when the engine is chosen.

    Use in plugins::

        @swiftkit.hookimpl
        def swiftkit_get_infer_engine(name, model, template, config):
            if name == "echo":
                return EchoEngine(template)
    """


@hookspec(firstresult=True)
def swiftkit_get_eval_benchmark(name, config, registries):
    """Return the evaluation benchmark selected by ``--eval_dataset``.

    Firstresult: answer ``None`` unless ``name`` is yours.

    :param str name: one of the names given to ``--eval_dataset`` (``"qa"`` is built in: reference
        answers from ``--val_dataset``, scored by exact match and containment).
    :param config: the :class:`swiftkit.config.EvalConfig`.
    :param registries: the loaded :class:`swiftkit.core.plugins.Registries` (datasets, models, ...), for
        benchmarks that read registered datasets.
    :return: an object with ``evaluate(engine, config) -> dict`` where ``engine`` is the inference
        engine (``generate(conversations, **generation) -> list[str]``) and the dict holds
        ``"metrics"`` (name -> float) and ``"samples"`` (a list of JSON-serialisable rows, one per
        scored example), or ``None``.

    Use in plugins::

        class Yes:
            def evaluate(self, engine, config):
                replies = engine.generate([[{"role": "user", "content": "Say yes."}]])
                ok = float("yes" in replies[0].lower())
                return {"metrics": {"says_yes": ok}, "samples": [{"reply": replies[0]}]}

        @swiftkit.hookimpl
        def swiftkit_get_eval_benchmark(name, config, registries):
            if name == "says-yes":
                return Yes()
    """


@hookspec(firstresult=True)
def swiftkit_get_export_format(name, config):
    """Return the exporter selected by ``--export_format`` or ``--quant_method``.

    Firstresult: answer ``None`` unless ``name`` is yours (declare it with ``swiftkit_choice_names`` for
    ``"export_format"`` so an unknown name lists it).

    :param str name: the selected format or quantizer (built in: ``merged``, ``bnb``, ``torchao``, ``gptq``,
        ``awq``, ``gguf``); ``--quant_method`` wins over ``--export_format``.
    :param config: the :class:`swiftkit.config.ExportConfig` (``swiftkit quantize``: its subclass
        ``QuantizeConfig``); ``config.quantize`` holds the quantization flags.
    :return: a :class:`swiftkit.exporters.base.ExportMethod` or ``None``. Its ``check(config)`` runs before any
        weights load (raise a ``SwiftkitError`` for a missing package or unsupported setting);
        ``write(source, output_dir)`` gets an :class:`~swiftkit.exporters.base.ExportSource` (the merged
        full-precision model, the tokenizer with the training chat template, the template, calibration rows when
        ``calibration=True``) and a fresh, empty folder. swiftkit then loads the folder back through
        ``--model``, checks parity (``parity.json``), adds ``export_info.json`` and a model card, and moves it to
        ``--output_dir`` only when everything succeeded, so a failed export leaves nothing behind. A bare callable
        ``export(model, tokenizer, output_dir, config)`` is accepted too (it gets the merged model).

    Use in plugins::

        from swiftkit.exporters.base import ExportMethod

        @swiftkit.hookimpl
        def swiftkit_get_export_format(name, config):
            if name == "fp16":
                def write(source, output_dir):
                    source.model.half().save_pretrained(output_dir)
                    source.tokenizer.save_pretrained(output_dir)
                return ExportMethod(name="fp16", write=write)
    """
