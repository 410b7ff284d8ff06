"""Builders of the built-in callbacks and the flag checks they make before any weights load.

Each ``build_*(config)`` checks the flags its callback depends on (one-line :class:`ConfigError` naming
them) and returns the callback (the callback modules import transformers, so they are imported here
only when chosen). :func:`training_overrides` gives the ``TrainingArguments`` fields these callbacks
decide, so that ``--load_best_model_at_end`` / ``--callbacks save_best`` and the save and evaluation
strategies agree.
"""

from __future__ import annotations

from swiftkit.core.errors import ConfigError
from swiftkit.train.metrics import METRIC_KEYS, require_evaluation

DEFAULT_NEFTUNE_ALPHA = 5.0  # `--callbacks neftune` without --neftune_noise_alpha
DEFAULT_EARLY_STOP_INTERVAL = 3  # `--callbacks early_stop` without --early_stop_interval


def best_metric(config) -> tuple[str, bool]:
    """``(eval-log key, greater is better)`` that early_stop and save_best compare."""
    cb = config.callback
    name = cb.metric_for_best_model or "loss"
    key = name if name.startswith("eval_") else f"eval_{name}"
    greater = cb.greater_is_better if cb.greater_is_better is not None else not name.endswith("loss")
    return key, greater


def _check_best_metric(config, what: str) -> None:
    """--metric_for_best_model must be something the evaluations log: loss, or a key of --metric."""
    name = config.callback.metric_for_best_model
    if not name:
        return
    short = name.removeprefix("eval_")
    metric = config.training.metric
    if short == "loss":
        return
    bench = getattr(config, "bench", None)
    benchmarks = [b.partition("=")[0] for b in (bench.eval_benchmarks if bench is not None else [])]
    if any(short.startswith(f"{b}_") for b in benchmarks):
        return  # a --eval_benchmarks score (eval_<benchmark>_<metric>), checked when the benchmark runs
    if not metric:
        raise ConfigError(f"{what}: --metric_for_best_model {name} is not computed at evaluations (only loss is): "
                          f"add --metric {short}, or drop --metric_for_best_model to compare the eval loss")
    keys = METRIC_KEYS.get(metric)
    if keys is not None and short not in keys:
        raise ConfigError(f"{what}: --metric_for_best_model {name} is not one of the values --metric {metric} logs "
                          f"({', '.join(['loss', *keys])})")


def save_best_on(config) -> bool:
    return config.callback.load_best_model_at_end or "save_best" in config.training.callbacks


def _save_best_flag(config) -> str:
    return "--load_best_model_at_end" if config.callback.load_best_model_at_end else "--callbacks save_best"


def build_early_stop(config):
    what = ("--early_stop_interval" if config.callback.early_stop_interval is not None
            else "--callbacks early_stop")
    require_evaluation(config, what)
    _check_best_metric(config, what)
    from swiftkit.train.early_stop import EarlyStop  # defers transformers

    key, greater = best_metric(config)
    return EarlyStop(config.callback.early_stop_interval or DEFAULT_EARLY_STOP_INTERVAL, key, greater)


def neftune_alpha(config) -> float:
    return config.callback.neftune_noise_alpha or DEFAULT_NEFTUNE_ALPHA


def build_neftune(config):
    from swiftkit.train.neftune import NEFTune  # defers torch

    return NEFTune(neftune_alpha(config))


def build_graceful_exit(config):
    from swiftkit.train.graceful_exit import GracefulExit  # defers transformers

    return GracefulExit(getattr(config, "command", "sft"))


def build_perf_log(config):
    from swiftkit.train.perf_log import PerfLog  # defers torch

    return PerfLog(config.callback.perf_log_steps)


def build_save_best(config):
    what, tr = _save_best_flag(config), config.training
    require_evaluation(config, what)
    _check_best_metric(config, what)
    if tr.save_strategy == "no":
        raise ConfigError(f"{what} keeps the best checkpoint, so it saves at evaluations: drop --save_strategy no")
    if config.is_given("save_strategy") and tr.save_strategy in ("steps", "epoch"):
        evaluation = tr.eval_strategy or "steps"
        if tr.save_strategy != evaluation:
            raise ConfigError(f"{what} with --save_strategy {tr.save_strategy} saves at evaluations, which are every "
                              f"{evaluation}: make --save_strategy and --eval_strategy the same (or drop "
                              "--save_strategy: then only evaluations that improve save)")
        if (evaluation == "steps" and tr.eval_steps and config.is_given("save_steps")
                and tr.save_steps % tr.eval_steps):
            raise ConfigError(f"{what} with --save_steps {tr.save_steps} and --eval_steps {tr.eval_steps}: saves must "
                              "fall on evaluations; make --save_steps a multiple of --eval_steps (or equal)")
    from swiftkit.train.save_best import SaveBest  # defers transformers

    return SaveBest(best_metric(config)[0])


def training_overrides(config) -> dict:
    """The ``TrainingArguments`` fields the built-in callbacks decide.

    - ``neftune_noise_alpha`` is always None: the neftune callback adds the noise (transformers' own
      version scales it by the batch width, see :mod:`swiftkit.train.neftune`), never both.
    - save_best: ``load_best_model_at_end``, the metric compared, and saves only at evaluations that
      improve it (``save_strategy best``) unless --save_strategy steps|epoch was given; then a
      step-wise save follows --eval_steps when --save_steps was not given.
    """
    out: dict = {"neftune_noise_alpha": None}
    if not save_best_on(config):
        return out
    tr = config.training
    key, greater = best_metric(config)
    out.update(load_best_model_at_end=True, metric_for_best_model=key.removeprefix("eval_"),
               greater_is_better=greater)
    if not (config.is_given("save_strategy") and tr.save_strategy in ("steps", "epoch")):
        out["save_strategy"] = "best"
    elif tr.save_strategy == "steps" and tr.eval_steps and not config.is_given("save_steps"):
        out["save_steps"] = tr.eval_steps
    return out
