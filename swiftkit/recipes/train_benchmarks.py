"""The step sft and rlhf share for ``--eval_benchmarks``: resolve and load the benchmarks at setup (a bad
name or file fails before training starts), and score the model being trained at each evaluation."""

from __future__ import annotations

from swiftkit.config.evaluation import benchmark_spec
from swiftkit.evaluate.benchmark import CardBenchmark
from swiftkit.evaluate.cards import BenchmarkError
from swiftkit.evaluate.local import LocalEvalModel
from swiftkit.evaluate.select import select_benchmarks
from swiftkit.evaluate.settings import settings_for_training
from swiftkit.train.benchmark_eval import attach_benchmark_eval


def prepare_benchmarks(cfg, host) -> dict | None:
    """``label -> (benchmark, (items, few-shot pool))`` of --eval_benchmarks (None when there are none)."""
    if not cfg.bench.eval_benchmarks:
        return None
    settings = settings_for_training(cfg)
    prepared = {}
    for label, choice in select_benchmarks(host, cfg.bench.eval_benchmarks, cfg, flag="--eval_benchmarks").items():
        bench = choice.value
        if not isinstance(bench, CardBenchmark):
            raise BenchmarkError(f"--eval_benchmarks {label}: only registered benchmarks (`swiftkit list "
                                 "benchmarks`) run during training; score the checkpoints with `swiftkit eval "
                                 f"--eval_dataset {label}`")
        bench.check(settings)
        prepared[label] = (bench, bench.items(settings))
    return prepared


def benchmark_plots(prepared: dict | None) -> dict[str, tuple[str, ...]]:
    """``benchmarks.png``: each benchmark's main metric against step (empty without --eval_benchmarks)."""
    if not prepared:
        return {}
    return {"benchmarks.png": tuple(f"{benchmark_spec(label)[0]}_{bench.card.primary}"
                                    for label, (bench, _) in prepared.items())}


def attach_benchmarks(trainer, prepared: dict | None, cfg, template) -> None:
    """Score ``prepared`` benchmarks at every evaluation of ``trainer`` (logged as eval_<name>_<metric>)."""
    if not prepared:
        return
    settings = settings_for_training(cfg)

    def score(model) -> dict[str, float]:
        lm = LocalEvalModel(model, template, name="the model being trained", batch_size=settings.batch_size)
        out = {}
        for label, (bench, items) in prepared.items():
            name = benchmark_spec(label)[0]
            result = bench.run(lm, settings, prepared=items)
            out.update({f"{name}_{k}": float(v) for k, v in result["metrics"].items()
                        if "/" not in k and k != "num_samples"})
        return out

    attach_benchmark_eval(trainer, score)
