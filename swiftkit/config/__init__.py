"""Typed configs: field groups (``groups``) composed into one config per command (``commands``)."""

from swiftkit.config.commands import (
    COMMANDS,
    CommandConfig,
    DataLintConfig,
    DataPreviewConfig,
    DeployConfig,
    EvalConfig,
    ExportConfig,
    InferConfig,
    PtConfig,
    RlhfConfig,
    SftConfig,
)
from swiftkit.config.groups import (
    AdapterArgs,
    ConfigError,
    DataArgs,
    DeployArgs,
    EvalArgs,
    ExportArgs,
    GenerationArgs,
    ModelArgs,
    PluginArgs,
    RlhfArgs,
    TemplateArgs,
    TrainingArgs,
    TunerArgs,
)

__all__ = [
    "COMMANDS", "AdapterArgs", "CommandConfig", "ConfigError", "DataLintConfig", "DataPreviewConfig", "DeployArgs", "DeployConfig", "DataArgs", "EvalArgs", "EvalConfig",
    "ExportArgs", "ExportConfig", "GenerationArgs", "InferConfig",
    "ModelArgs", "PluginArgs", "PtConfig", "RlhfArgs", "RlhfConfig", "SftConfig", "TemplateArgs", "TrainingArgs", "TunerArgs",
]
