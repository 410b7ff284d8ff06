"""The eval recipe: ``setup()`` picks the benchmarks and loads the model once; ``run()`` scores each.

Every benchmark name is resolved before any weights load, so a typo fails in a second. Results go
to ``--eval_output_dir/<timestamp>/<benchmark>/`` (``metrics.json``, ``samples.jsonl``), each
folder written under a temporary name and renamed when complete; ``summary.json`` in the
timestamp folder holds every benchmark's metrics.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from swiftkit.config import EvalConfig
from swiftkit.config.groups import ConfigError


def _new_run_dir(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = root / stamp, 1
    while path.exists():
        path, n = root / f"{stamp}-{n}", n + 1
    return path


def _write_result(folder: Path, result: dict) -> None:
    from swiftkit.train.output import staged_dir

    with staged_dir(folder) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(result["metrics"], indent=2) + "\n", encoding="utf-8")
        with (tmp / "samples.jsonl").open("w", encoding="utf-8") as out:
            for row in result.get("samples", []):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


class EvalRecipe:
    """Run ``--eval_dataset`` benchmarks on one loaded model."""

    def __init__(self, cfg: EvalConfig):
        self.cfg = cfg

    def setup(self) -> None:
        from swiftkit.choices import choose
        from swiftkit.infer import InferRecipe
        from swiftkit.plugins import build_registries, get_plugin_manager

        cfg = self.cfg
        pm = get_plugin_manager(cfg.plugin.plugins, cfg.plugin.disable_plugins)
        registries = build_registries(pm)
        self.benchmarks = {
            name: choose(pm, "eval_benchmark", name, config=cfg, registries=registries)
            for name in dict.fromkeys(cfg.eval.eval_dataset)
        }
        self.infer = InferRecipe(cfg)
        self.infer.setup(pm)

    def run(self) -> dict:
        cfg = self.cfg
        run_dir = _new_run_dir(Path(cfg.eval.eval_output_dir))
        summary = {}
        for name, benchmark in self.benchmarks.items():
            start = time.time()
            result = benchmark.evaluate(self.infer.engine, cfg)
            if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
                raise ConfigError(
                    f"benchmark {name!r} returned {type(result).__name__}, not a dict with 'metrics' "
                    "(see swiftkit_get_eval_benchmark in docs/reference/hooks.md)"
                )
            _write_result(run_dir / name, result)
            summary[name] = result["metrics"]
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result["metrics"].items())
            print(f"[swiftkit] eval {name}: {shown} ({time.time() - start:.1f} s)", file=sys.stderr)
        info = {"model": self.infer.info["model_path"], "adapters": self.infer.info["adapters"],
                "template": self.infer.info["template"], "results": summary}
        (run_dir / "summary.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        print(f"[swiftkit] eval: results in {run_dir}", file=sys.stderr)
        return {"output_dir": str(run_dir), "results": summary}


def run_eval(cfg: EvalConfig) -> dict:
    recipe = EvalRecipe(cfg)
    recipe.setup()
    return recipe.run()
