"""Typed configs: field groups composed into one frozen config per command.

The training-side groups are in :mod:`swiftkit.config.groups`, the inference-side ones in
:mod:`swiftkit.config.inference`, the alignment ones in :mod:`swiftkit.config.rlhf`, export/quantize's in
:mod:`swiftkit.config.export`, and the command
configs in :mod:`swiftkit.config.commands`.
"""

from swiftkit.config.commands import (
    CONFIGS,
    CommandConfig,
    DataLintConfig,
    DataPreviewConfig,
    DeployConfig,
    EvalConfig,
    ExportConfig,
    InferConfig,
    PtConfig,
    QuantizeConfig,
    RlhfConfig,
    RolloutConfig,
    SftConfig,
)
from swiftkit.config.evaluation import BenchmarkEvalArgs, EvalArgs
from swiftkit.config.export import ExportArgs, HubArgs, QuantizeArgs
from swiftkit.config.groups import DataArgs, ModelArgs, PluginArgs, TemplateArgs, TrainingArgs
from swiftkit.config.inference import (
    AdapterArgs,
    DataToolArgs,
    DeployArgs,
    GenerationArgs,
    RolloutServerArgs,
    VllmArgs,
)
from swiftkit.config.rlhf import (
    CpoArgs,
    DpoArgs,
    GrpoArgs,
    KtoArgs,
    PpoArgs,
    RewardModelArgs,
    RlhfArgs,
    RolloutArgs,
    VllmRolloutArgs,
)
from swiftkit.config.training_parts import CallbackArgs, OptimArgs
from swiftkit.config.tuners import QuantArgs, TunerArgs
from swiftkit.core.errors import ConfigError

__all__ = [
    "AdapterArgs",
    "CONFIGS",
    "CallbackArgs",
    "CommandConfig",
    "ConfigError",
    "CpoArgs",
    "DataArgs",
    "DataLintConfig",
    "DataPreviewConfig",
    "DataToolArgs",
    "DeployArgs",
    "DeployConfig",
    "DpoArgs",
    "BenchmarkEvalArgs",
    "EvalArgs",
    "EvalConfig",
    "ExportArgs",
    "ExportConfig",
    "GenerationArgs",
    "GrpoArgs",
    "HubArgs",
    "InferConfig",
    "KtoArgs",
    "ModelArgs",
    "OptimArgs",
    "PluginArgs",
    "PpoArgs",
    "PtConfig",
    "QuantArgs",
    "QuantizeArgs",
    "QuantizeConfig",
    "RewardModelArgs",
    "RlhfArgs",
    "RlhfConfig",
    "RolloutArgs",
    "RolloutConfig",
    "RolloutServerArgs",
    "SftConfig",
    "TemplateArgs",
    "TrainingArgs",
    "TunerArgs",
    "VllmArgs",
    "VllmRolloutArgs",
]
