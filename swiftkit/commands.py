"""The command table: every command's name, one help text, config class and recipe.

The CLI (:mod:`swiftkit.cli.main`), the Python API (:mod:`swiftkit.api`) and ``--help`` all read
this one table, so they cannot drift. Each invocation builds one plugin host here
(:func:`build_host`) and hands it to config parsing and to the recipe; :func:`run` runs a recipe
the same way for both entry points.

The table names each command's config and recipe by import path; they are imported when a command is
parsed or run, so ``swiftkit --help`` imports none of them (nor the built-in plugins).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from swiftkit.config.files import load_yaml_config
from swiftkit.config.plugin_fields import collect_plugin_fields
from swiftkit.core import distributed
from swiftkit.core._compat import silence_known_warnings
from swiftkit.core.plugins import PluginHost

if TYPE_CHECKING:
    from swiftkit.config import CommandConfig

# Built-in behaviour, registered through the same hooks as third-party plugins, in this order.
BUILTIN_PLUGIN_MODULES = ("swiftkit.models.plugin", "swiftkit.data.plugin", "swiftkit.templates.plugin",
                          "swiftkit.train.plugin", "swiftkit.inference.plugin", "swiftkit.evaluate.plugin",
                          "swiftkit.exporters.plugin")


def builtin_plugins() -> tuple:
    """The built-in plugin modules, imported on first use (``--help`` needs none of them)."""
    return tuple(importlib.import_module(name) for name in BUILTIN_PLUGIN_MODULES)


def _resolve(path: str):
    """The object ``"package.module:Name"`` names."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Command:
    """One command. A *recipe* command has a config and a recipe (and may be a Python API function);
    a *tool* command (``list``, ``plugins``) inspects the installation with flags of its own."""

    name: str
    help: str
    config_path: str | None = None  # "module:Class", imported when first used: the table itself stays cheap
    recipe_path: str | None = None
    api: str | None = None  # the Python API function's name, when it has one

    @property
    def config(self) -> type[CommandConfig] | None:
        return _resolve(self.config_path) if self.config_path else None

    @property
    def recipe(self) -> type | None:
        return _resolve(self.recipe_path) if self.recipe_path else None

    @property
    def is_tool(self) -> bool:
        return self.recipe_path is None


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("sft", "Supervised fine-tuning (LoRA / full / freeze) on conversations.",
            "swiftkit.config:SftConfig", "swiftkit.recipes.sft:SftRecipe", "sft"),
    Command("pt", "Continued pretraining on raw text (loss on every token).",
            "swiftkit.config:PtConfig", "swiftkit.recipes.sft:SftRecipe", "pt"),
    Command("rlhf", "Alignment: --rlhf_type dpo|orpo|simpo|cpo|kto|rm|ppo|grpo on preference, labelled or prompt "
            "data.", "swiftkit.config:RlhfConfig", "swiftkit.recipes.rlhf:RlhfRecipe", "rlhf"),
    Command("infer", "Chat with a model or trained adapters, interactively or over a dataset.",
            "swiftkit.config:InferConfig", "swiftkit.recipes.infer:InferRecipe", "infer"),
    Command("eval", "Score a model or trained adapters on benchmarks (built in: qa on --val_dataset).",
            "swiftkit.config:EvalConfig", "swiftkit.recipes.eval:EvalRecipe", "eval"),
    Command("export", "Write a model or trained adapters in a format other tools load: merged safetensors, or "
            "quantized with --quant_method; checked against the source (parity.json); --push_to_hub uploads it.",
            "swiftkit.config:ExportConfig", "swiftkit.recipes.export:ExportRecipe", "export"),
    Command("quantize", "Quantize a model or trained adapters: --quant_method bnb|torchao|gptq|awq|gguf (GGUF with "
            "--to_ollama writes an Ollama Modelfile); checked against the source (parity.json).",
            "swiftkit.config:QuantizeConfig", "swiftkit.recipes.export:ExportRecipe", "quantize"),
    Command("deploy", "Serve a model and its adapters over an OpenAI-compatible HTTP API (/v1/chat/completions).",
            "swiftkit.config:DeployConfig", "swiftkit.recipes.deploy:DeployRecipe", "deploy"),
    Command("rollout", "Serve a model for GRPO and PPO rollouts on another machine or GPU: `swiftkit rlhf "
            "--rlhf_type grpo|ppo --use_vllm true --vllm_mode server` generates on it and pushes its weights.",
            "swiftkit.config:RolloutConfig", "swiftkit.recipes.rollout:RolloutRecipe"),
    Command("data lint", "Report every problem in --dataset: file, line, field and what is wrong (exit 1 on errors).",
            "swiftkit.config:DataLintConfig", "swiftkit.recipes.data:DataLintRecipe"),
    Command("data preview", "Show one encoded --dataset row with the tokens that get loss marked.",
            "swiftkit.config:DataPreviewConfig", "swiftkit.recipes.data:DataPreviewRecipe"),
    Command("list", "List registered entries: swiftkit list models|datasets|templates|preprocessors|rewards."),
    Command("plugins", "Inspect or create plugins: swiftkit plugins list | new NAME."),
    Command("web-ui", "Browser UI: check data, train, chat, evaluate, export, deploy (needs swiftkit[webui])."),
)}


def build_host(files=(), disabled=(), *, tolerant: bool = False) -> PluginHost:
    """The one plugin host of an invocation: built-ins, installed entry points, ``files``."""
    return PluginHost.build(builtin_plugins(), files, disabled, tolerant=tolerant)


def as_list(value) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def plugin_fields(host: PluginHost, command: Command) -> dict:
    """The flags loaded plugins add to ``command`` (name -> PluginField)."""
    return collect_plugin_fields(host, command.name, command.config.flat_fields())


def config_from_values(command: Command, host: PluginHost, values: dict[str, Any], source: str) -> CommandConfig:
    """A validated config from flat values (YAML merged with flags or keyword arguments)."""
    return command.config.from_flat(values, source=source, plugin_fields=plugin_fields(host, command))


def runtime_setup() -> None:
    """Library runtime settings (not configuration) every command gets, from the CLI or the API:
    OpenMP threads that spin while idle make steps 3-5x slower on a shared 2-core machine, and the
    tokenizers library warns about forked workers; known upstream warnings are silenced."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    silence_known_warnings()


def run(command: Command, config: CommandConfig, host: PluginHost) -> dict:
    """Build ``command``'s recipe with the config and host, set it up and run it."""
    runtime_setup()
    recipe = command.recipe(config, host)
    recipe.setup()
    result = recipe.run()
    distributed.leave()  # every rank got here: the process group closes before the process exits
    return result


def api_values(config_file: str | None, fields: dict) -> dict:
    """YAML values (when ``config_file`` is given) overridden by keyword arguments."""
    values = load_yaml_config(config_file) if config_file is not None else {}
    values.update(fields)
    return values
