"""Built-in plugin for evaluation: the ``qa`` benchmark, through the public benchmark hook."""

from __future__ import annotations

from swiftkit.core.hookspecs import hookimpl
from swiftkit.evaluate.qa import QABenchmark


@hookimpl
def swiftkit_choice_names(kind):
    return ["qa"] if kind == "eval_benchmark" else []


@hookimpl
def swiftkit_get_eval_benchmark(name, config, registries):
    if name != "qa":
        return None

    return QABenchmark(registries)
