"""The plugin module named by the ``swiftkit`` entry point: ``--callbacks mlflow`` and its two flags.

swiftkit imports this module at start-up for every command, so it imports neither mlflow nor
transformers; both are imported only when the ``mlflow`` callback is selected.
"""

from __future__ import annotations

import swiftkit
from swiftkit.config.plugin_fields import PluginField

CALLBACK_NAME = "mlflow"
DEFAULT_EXPERIMENT = "swiftkit"
MISSING_MLFLOW = "install swiftkit-mlflow's dependency: pip install mlflow-skinny"


@swiftkit.hookimpl
def swiftkit_add_config_fields(command):
    return [
        PluginField(
            "mlflow_tracking_uri", str, None,
            "MLflow tracking URI for --callbacks mlflow (a server URL, databricks, a database or a "
            "directory); default: a local file store in <run dir>/mlruns.",
            commands=("sft", "pt"),
        ),
        PluginField(
            "mlflow_experiment", str, DEFAULT_EXPERIMENT,
            "MLflow experiment that --callbacks mlflow logs runs into (created when missing).",
            commands=("sft", "pt"),
        ),
    ]


@swiftkit.hookimpl
def swiftkit_choice_names(kind):
    """Declare the name, so errors and `swiftkit plugins list` show it."""
    return [CALLBACK_NAME] if kind == "callback" else []


@swiftkit.hookimpl
def swiftkit_get_callback(name, config):
    if name != CALLBACK_NAME:
        return None
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        from swiftkit.core.plugins import PluginError

        raise PluginError(f"--callbacks {CALLBACK_NAME}: {MISSING_MLFLOW} ({exc})") from exc
    from swiftkit_mlflow.callback import MlflowCallback

    options = config.plugin_options
    return MlflowCallback(
        config,
        tracking_uri=options.get("mlflow_tracking_uri"),
        experiment=options.get("mlflow_experiment") or DEFAULT_EXPERIMENT,
    )
