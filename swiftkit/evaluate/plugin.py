"""Built-in plugin for evaluation: the benchmark cards of ``benchmark_registry/``, and the benchmarks
``--eval_dataset`` selects (``qa``, and every registered card), through the public hooks."""

from __future__ import annotations

from swiftkit.core.hookspecs import hookimpl
from swiftkit.core.resources import data_dir
from swiftkit.evaluate.benchmark import CardBenchmark
from swiftkit.evaluate.cards import load_cards
from swiftkit.evaluate.qa import QABenchmark


@hookimpl
def swiftkit_register_benchmarks(registry):
    for card, path in load_cards(data_dir("benchmark_registry")):
        registry.register(card.name, card, source=f"benchmark_registry/{path.name}", override=card.override)


@hookimpl
def swiftkit_choice_names(kind):
    if kind != "eval_benchmark":
        return []
    return ["qa", *(card.name for card, _ in load_cards(data_dir("benchmark_registry")))]


@hookimpl
def swiftkit_get_eval_benchmark(name, config, registries):
    if name == "qa":
        return QABenchmark(registries)
    if name in registries.benchmarks:
        return CardBenchmark(registries.benchmarks.get(name))
    return None
