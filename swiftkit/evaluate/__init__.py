"""Evaluation benchmarks (``--eval_dataset``): the built-in ``qa`` and the benchmark hook's contract.

The ``eval`` recipe (:mod:`swiftkit.recipes.eval`) chooses benchmarks by name and runs each on one
inference engine.
"""
