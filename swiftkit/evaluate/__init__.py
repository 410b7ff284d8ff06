"""``swiftkit eval``: score a model or trained adapters on benchmarks chosen by name."""

from swiftkit.evaluate.recipe import EvalRecipe, run_eval

__all__ = ["EvalRecipe", "run_eval"]
