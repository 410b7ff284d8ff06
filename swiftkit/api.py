"""The Python API: the same config fields as the CLI flags, as keyword arguments.

    import swiftkit
    result = swiftkit.sft(model="smollm2-135m-instruct", dataset="self-cognition#100",
                          model_name="Nova", model_author="Acme", max_steps=10)
    swiftkit.rlhf(rlhf_type="dpo", model="smollm2-135m-instruct", dataset="pairs.jsonl", max_steps=10)
    swiftkit.infer(adapters=result["last_checkpoint"], val_dataset="eval.jsonl")
    swiftkit.eval(adapters=result["last_checkpoint"], val_dataset="eval.jsonl")
    swiftkit.export(adapters=result["last_checkpoint"], output_dir="merged-model")
"""

from __future__ import annotations

import os

from swiftkit.config import EvalConfig, ExportConfig, InferConfig, PtConfig, RlhfConfig, SftConfig


def _runtime_env() -> None:
    from swiftkit._compat import silence_known_warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    silence_known_warnings()


def sft(config: str | None = None, **fields) -> dict:
    """Fine-tune; ``config`` is an optional YAML file, ``fields`` are flag names (they override it).

    Returns a dict with ``run_dir``, ``last_checkpoint``, ``global_step``, ``train_loss``,
    ``train_tokens_per_s`` and ``peak_rss_mb``.
    """
    from swiftkit.train.sft import run_training

    _runtime_env()
    return run_training(_build(SftConfig, config, fields))


def pt(config: str | None = None, **fields) -> dict:
    """Continued pretraining on raw text; same arguments and result as :func:`sft`."""
    from swiftkit.train.sft import run_training

    _runtime_env()
    return run_training(_build(PtConfig, config, fields))


def rlhf(config: str | None = None, **fields) -> dict:
    """Alignment training (``rlhf_type`` dpo, orpo, simpo, cpo, kto, rm, ppo or grpo); same result
    as :func:`sft` plus ``rlhf_type`` and ``signals`` (the method's logged metrics, first and last)."""
    from swiftkit.train.rlhf import run_rlhf

    _runtime_env()
    return run_rlhf(_build(RlhfConfig, config, fields))


def infer(config: str | None = None, **fields) -> dict:
    """Batch inference over ``val_dataset`` (or interactive chat on stdin when none is given).

    Returns ``{"result_path": ..., "num_rows": ...}`` in batch mode.
    """
    from swiftkit.infer import InferRecipe

    _runtime_env()
    recipe = InferRecipe(_build(InferConfig, config, fields))
    recipe.setup()
    return recipe.run()


def eval(config: str | None = None, **fields) -> dict:  # noqa: A001 - the command's name
    """Score a model or adapters on ``eval_dataset`` benchmarks (default ``qa`` on ``val_dataset``).

    Returns ``{"output_dir": ..., "results": {benchmark: {metric: value}}}``.
    """
    from swiftkit.evaluate import run_eval

    _runtime_env()
    return run_eval(_build(EvalConfig, config, fields))


def export(config: str | None = None, **fields) -> dict:
    """Export trained ``adapters`` in ``export_format`` (default ``merged``).

    Returns ``{"output_dir": ..., "export_format": ...}``.
    """
    from swiftkit.export import run_export

    _runtime_env()
    return run_export(_build(ExportConfig, config, fields))


def _build(cfg_cls, config: str | None, fields: dict):
    values = {}
    if config is not None:
        from swiftkit.config.files import load_yaml_config

        values.update(load_yaml_config(config))
    values.update(fields)
    from swiftkit.cli.args import as_list, plugin_fields_for

    plugin_fields = plugin_fields_for(
        cfg_cls, as_list(values.get("plugins")), as_list(values.get("disable_plugins"))
    )
    return cfg_cls.from_flat(values, source="argument", plugin_fields=plugin_fields)
