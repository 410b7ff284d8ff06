"""Turning ``--eval_dataset`` / ``--eval_benchmarks`` values into benchmarks, before any weights load.

``NAME`` asks the plugins (``swiftkit_get_eval_benchmark``: the registered cards, ``qa``, a plugin's own);
``NAME=PATH`` runs the registered card ``NAME`` on a local file or folder in its native layout.
"""

from __future__ import annotations

from swiftkit.config.evaluation import benchmark_spec
from swiftkit.core.choices import Choice, choose_from
from swiftkit.core.registry import closest
from swiftkit.evaluate.benchmark import CardBenchmark
from swiftkit.evaluate.cards import BenchmarkError


def select_benchmarks(host, specs: list[str], config, *, flag: str = "--eval_dataset") -> dict[str, Choice]:
    """``label -> Choice`` for every value (duplicates dropped), in order."""
    chosen: dict[str, Choice] = {}
    registry = host.registries.benchmarks
    for spec in dict.fromkeys(specs):
        name, path = benchmark_spec(spec)
        if path is None:
            chosen[spec] = choose_from(host, "eval_benchmark", name, config=config, registries=host.registries)
            continue
        if name not in registry:
            raise BenchmarkError(f"{flag} {spec}: NAME=PATH runs a registered benchmark on local data, and {name!r} "
                                 f"is not one{closest(name, list(registry))} (`swiftkit list benchmarks`; "
                                 "general_mcq, general_qa, math-qa and perplexity take any local file)")
        plugin = registry.plugin(name)
        chosen[spec] = Choice(CardBenchmark(registry.get(name), path, label=spec), plugin, host.label(plugin))
    return chosen
