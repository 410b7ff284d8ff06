"""Typed configs: field groups (``groups``) composed into one config per command (``commands``)."""

from swiftkit.config.commands import COMMANDS, CommandConfig, InferConfig, PtConfig, SftConfig
from swiftkit.config.groups import (
    ConfigError,
    DataArgs,
    GenerationArgs,
    ModelArgs,
    PluginArgs,
    TemplateArgs,
    TrainingArgs,
    TunerArgs,
)

__all__ = [
    "COMMANDS", "CommandConfig", "ConfigError", "DataArgs", "GenerationArgs", "InferConfig",
    "ModelArgs", "PluginArgs", "PtConfig", "SftConfig", "TemplateArgs", "TrainingArgs", "TunerArgs",
]
