"""Compatibility with MLflow releases: the opt-in that local file stores need since MLflow 3.13.

MLflow 3.13 put the file-system tracking store in maintenance mode: creating one raises unless the
``MLFLOW_ALLOW_FILE_STORE`` environment variable is true. The database store it recommends instead
(``sqlite:///...``) needs SQLAlchemy, which ``mlflow-skinny`` does not ship, so a local file store
stays this plugin's offline default and is opted into here. Only local file URIs are affected, a
value the user set is kept, and MLflow before 3.13 (no such variable) is left alone. This can go
when the default moves to a store that works with ``mlflow-skinny`` out of the box.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

FILE_STORE_OPT_IN = "MLFLOW_ALLOW_FILE_STORE"


def is_local_file_store(uri: str) -> bool:
    """Whether MLflow treats ``uri`` as a file-system tracking store (a path or ``file:`` URI)."""
    return urlparse(uri).scheme in ("", "file")


def allow_local_file_store(uri: str) -> None:
    """Opt into MLflow's file store for ``uri`` when it is local and this MLflow gates it."""
    import mlflow.environment_variables as mlflow_env

    if is_local_file_store(uri) and hasattr(mlflow_env, FILE_STORE_OPT_IN):
        os.environ.setdefault(FILE_STORE_OPT_IN, "true")
