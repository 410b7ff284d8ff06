"""The eval recipe: ``setup()`` resolves the benchmarks and models; ``run()`` scores each model on each.

Every benchmark is resolved before any weights load, so a typo fails in a second. Results go to
``--eval_output_dir/<timestamp>/`` : per benchmark ``<benchmark>/metrics.json`` and ``samples.jsonl``
(under ``<model label>/`` when several models are compared), each folder written under a temporary name
and renamed when complete; ``summary.json`` holds every model's metrics; with ``--compare``,
``report.json``, ``report.md`` and ``report.png`` compare them. ``--eval_backend evalscope`` hands the
same benchmarks to evalscope, pointed at a server started here for the model (or at ``--eval_url``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from swiftkit.config import EvalConfig
from swiftkit.config.evaluation import benchmark_spec
from swiftkit.core.errors import PluginError
from swiftkit.core.io import staged_dir, timestamped_path, write_json
from swiftkit.evaluate.benchmark import CardBenchmark
from swiftkit.evaluate.report import write_report
from swiftkit.evaluate.runner import metrics_line
from swiftkit.evaluate.select import select_benchmarks
from swiftkit.evaluate.settings import settings_from_eval_config
from swiftkit.inference.loading import with_run_data_args
from swiftkit.recipes.engines import seed_sampling
from swiftkit.recipes.eval_evalscope import evalscope_datasets, evalscope_runner, run_on_evalscope
from swiftkit.recipes.eval_models import model_specs, open_model, unique_names, weights_fingerprint


def _folder_name(label: str) -> str:
    name, path = benchmark_spec(label)
    return name if path is None else f"{name}-local"


def _write_result(folder: Path, result: dict) -> None:
    with staged_dir(folder) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(result["metrics"], indent=2) + "\n", encoding="utf-8")
        with (tmp / "samples.jsonl").open("w", encoding="utf-8") as out:
            for row in result.get("samples", []):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


class EvalRecipe:
    """Run ``--eval_dataset`` benchmarks on one model, or on several with ``--compare``."""

    def __init__(self, config: EvalConfig, host):
        self.config = config
        self.host = host

    def setup(self) -> None:
        self.config = with_run_data_args(self.config)  # --load_data_args: the run's validation rows
        cfg = self.config
        self.specs = model_specs(cfg)
        if cfg.eval.eval_backend == "evalscope":
            self.evalscope_datasets = evalscope_datasets(cfg, self.host.registries)
            self.evalscope_python = evalscope_runner(cfg)  # finds (or creates) evalscope's environment now
            self.benchmarks = {}
        else:
            self.benchmarks = select_benchmarks(self.host, cfg.eval.eval_dataset, cfg)
        seed_sampling(cfg.data.data_seed)

    def run(self) -> dict:
        cfg = self.config
        run_dir = timestamped_path(Path(cfg.eval.eval_output_dir))
        runs, loaded = [], {}
        for spec in self.specs:
            base = run_dir / spec.label if len(self.specs) > 1 else run_dir
            with open_model(cfg, self.host, spec, loaded) as (model, info):
                print(f"[swiftkit] eval: {spec.label}: model {info['model_path']}, adapters {info['adapters']}, "
                      f"template {info.get('template')}", file=sys.stderr)
                if cfg.eval.eval_backend == "evalscope":
                    results = self._evalscope(model, info, run_dir / ".evalscope" / spec.label)
                else:
                    key = weights_fingerprint(info)
                    results = {label: self._native(label, choice, model, key)
                               for label, choice in self.benchmarks.items()}
            # gsm8k=a.jsonl and gsm8k=b.jsonl: gsm8k-local, gsm8k-local-2
            for folder, result in zip(unique_names([_folder_name(label) for label in results]), results.values()):
                _write_result(base / folder, result)
            runs.append({"label": spec.label, "model": info["model_path"], "adapters": info["adapters"],
                         "template": info.get("template"), "results": results})
        summary = {"backend": cfg.eval.eval_backend,
                   "models": [{k: r[k] for k in ("label", "model", "adapters", "template")} for r in runs],
                   "results": {r["label"]: {k: v["metrics"] for k, v in r["results"].items()} for r in runs}}
        if len(runs) == 1:  # the single-model layout: {"model", "adapters", "template", "results"}
            summary = {"backend": cfg.eval.eval_backend, **summary["models"][0],
                       "results": summary["results"][runs[0]["label"]]}
        write_json(run_dir / "summary.json", summary)
        out = {"output_dir": str(run_dir), "results": summary["results"]}
        if len(runs) > 1:
            paths = write_report([_report_run(r) for r in runs], run_dir, title="swiftkit eval: " +
                                 " vs ".join(r["label"] for r in runs))
            out["report"] = {k: str(v) for k, v in paths.items()}
            print(f"[swiftkit] eval: comparison in {paths['md']}", file=sys.stderr)
        print(f"[swiftkit] eval: results in {run_dir}", file=sys.stderr)
        return out

    def _native(self, label: str, choice, model, model_key: str) -> dict:
        start = time.time()
        with self.host.guard(choice.plugin, f"benchmark {label!r}"):
            if isinstance(choice.value, CardBenchmark):
                name = benchmark_spec(label)[0]
                result = choice.value.run(model, settings_from_eval_config(self.config, name, model_key=model_key))
            else:  # qa and plugins' benchmarks: evaluate(model, config)
                result = choice.value.evaluate(model, self.config)
        if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
            raise PluginError(
                f"benchmark {label!r} ({choice.label}) returned {type(result).__name__}, not a dict with "
                "'metrics' (see swiftkit_get_eval_benchmark in docs/reference/hooks.md)"
            )
        print(f"[swiftkit] eval {label}: {metrics_line(result['metrics'])} ({time.time() - start:.1f} s)",
              file=sys.stderr)
        return result

    def _evalscope(self, model, info: dict, work_dir: Path) -> dict:
        return run_on_evalscope(self.config, self.evalscope_python, self.evalscope_datasets, model, info, work_dir)


def _report_run(run: dict) -> dict:
    results = {}
    for label, result in run["results"].items():
        metrics = {k: v for k, v in result["metrics"].items() if isinstance(v, (int, float))}
        primary = result.get("primary") or next((k for k in metrics if k != "num_samples"), None)
        if primary is None:
            continue
        results[benchmark_spec(label)[0]] = {
            "metrics": metrics, "primary": primary, "item_scores": result.get("item_scores"),
            "higher_is_better": result.get("higher_is_better", True)}
    return {"label": run["label"], "model": run["model"], "adapters": run["adapters"], "results": results}
