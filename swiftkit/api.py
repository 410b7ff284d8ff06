"""The Python API: one function per command, its keyword arguments the command's flags.

    import swiftkit
    result = swiftkit.sft(model="smollm2-135m-instruct", dataset="self-cognition#100",
                          model_name="Nova", model_author="Acme", max_steps=10)
    swiftkit.rlhf(rlhf_type="dpo", model="smollm2-135m-instruct", dataset="pairs.jsonl", max_steps=10)
    swiftkit.infer(adapters=result["last_checkpoint"], val_dataset="eval.jsonl")
    swiftkit.eval(adapters=result["last_checkpoint"], val_dataset="eval.jsonl")
    swiftkit.export(adapters=result["last_checkpoint"], output_dir="merged-model")
    swiftkit.quantize(model="merged-model", quant_method="gguf", gguf_type="q8_0", output_dir="model-gguf")

Each function takes an optional YAML file of flag values first (keyword arguments override it) and
returns the recipe's result dict. Its signature (``inspect.signature``, ``help()``) lists every flag
with its default, from the command table; flags that loaded plugins add are accepted too.
"""

from __future__ import annotations

import inspect
import typing

from swiftkit import commands
from swiftkit.config import PluginArgs
from swiftkit.config.flagnames import given_value
from swiftkit.models import load_tokenizer as load
from swiftkit.models import resolve_model
from swiftkit.templates import get_template as get


def _run(name: str, config: str | None, fields: dict) -> dict:
    command = commands.COMMANDS[name]
    values = commands.api_values(config, fields)
    files = given_value(values, PluginArgs, "plugins")
    host = commands.build_host(commands.as_list(files), commands.as_list(values.get("disable_plugins")))
    cfg = commands.config_from_values(command, host, values, source="argument")
    return commands.run(command, cfg, host)


def sft(config: str | None = None, /, **fields) -> dict:
    return _run("sft", config, fields)


def pt(config: str | None = None, /, **fields) -> dict:
    return _run("pt", config, fields)


def rlhf(config: str | None = None, /, **fields) -> dict:
    return _run("rlhf", config, fields)


def infer(config: str | None = None, /, **fields) -> dict:
    return _run("infer", config, fields)


def eval(config: str | None = None, /, **fields) -> dict:  # noqa: A001 - the command's name
    return _run("eval", config, fields)


def export(config: str | None = None, /, **fields) -> dict:
    return _run("export", config, fields)


def quantize(config: str | None = None, /, **fields) -> dict:
    return _run("quantize", config, fields)


def deploy(config: str | None = None, /, **fields) -> dict:
    return _run("deploy", config, fields)


RESULTS = {
    "sft": "``run_dir``, ``last_checkpoint``, ``global_step``, ``train_loss``, ``train_tokens_per_s``, ``peak_rss_mb`` "
           "(``best_checkpoint`` and ``best_metric`` with save_best); with ``dry_run=True`` the plan instead: "
           "``model``, ``parameters``, ``data``, ``schedule``, ``memory``, ``notes``",
    "pt": "the same as sft",
    "rlhf": "the same as sft, plus ``rlhf_type`` and ``signals`` (the method's logged metrics, first and last)",
    "infer": "``result_path`` and ``num_rows`` in batch mode (``--val_dataset``); ``turns`` interactively",
    "eval": "``output_dir`` and ``results`` (benchmark -> metric -> value)",
    "export": "``output_dir``, ``export_format`` (the format or quantizer used), ``label``, ``parity`` (the parity "
              "report, None with check_parity=False), ``size_bytes`` and ``hub_url`` (None unless push_to_hub)",
    "quantize": "the same as export",
    "deploy": "nothing; it serves until interrupted",
}


def _describe(func) -> None:
    """Give ``func`` the signature and docstring of its command, from the command table."""
    command = commands.COMMANDS[func.__name__]
    params = [inspect.Parameter("config", inspect.Parameter.POSITIONAL_ONLY, default=None,
                                annotation="str | None")]
    lines = []
    for name, (_group, field, tp) in command.config.flat_fields().items():
        default = field.default_factory() if callable(field.default_factory) else field.default
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=typing.Optional[tp] if default is None else tp))
        lines.append(f"    {name}: {field.metadata.get('help', '')}")
    params.append(inspect.Parameter("plugin_fields", inspect.Parameter.VAR_KEYWORD))
    func.__signature__ = inspect.Signature(params, return_annotation=dict)
    func.__doc__ = (f"{command.help}\n\n``config`` is an optional YAML file of flag values; keyword arguments "
                    f"override it (flags that loaded plugins add are accepted too).\nReturns a dict: "
                    f"{RESULTS[func.__name__]}.\n\nArguments:\n" + "\n".join(lines))


for _func in (sft, pt, rlhf, infer, eval, export, quantize, deploy):
    _describe(_func)


def load_tokenizer(model: str, *, plugins: list[str] = (), **resolve_kwargs):
    """The tokenizer of ``model`` (a local directory, hub id or registered name), with a pad token."""

    host = commands.build_host(plugins)
    trust = resolve_kwargs.pop("trust_remote_code", False)
    return load(resolve_model(model, registry=host.registries.models, **resolve_kwargs), trust_remote_code=trust)


def get_template(tokenizer, template: str | None = None, *, plugins: list[str] = (), **options):
    """The :class:`~swiftkit.templates.Template` for ``tokenizer``: its own chat template, or the
    registered one named ``template`` (``system``, ``max_length``, ``truncation_strategy`` and
    ``loss_scale`` as the flags)."""

    return get(tokenizer, template, registry=commands.build_host(plugins).registries.templates, **options)
