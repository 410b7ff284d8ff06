"""swiftkit-mlflow: a third-party swiftkit plugin logging training runs to MLflow (``--callbacks mlflow``)."""

__version__ = "0.1.0"
