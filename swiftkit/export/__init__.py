"""``swiftkit export``: write a trained model in a format other tools load without swiftkit."""

from swiftkit._callable import make_callable
from swiftkit.export.recipe import ExportRecipe, run_export

__all__ = ["ExportRecipe", "run_export"]

make_callable(__name__)
