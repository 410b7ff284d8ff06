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
from swiftkit.core.choices import choose_from
from swiftkit.core.errors import PluginError
from swiftkit.core.io import staged_dir, timestamped_path
from swiftkit.inference.loading import with_run_data_args
from swiftkit.recipes.engines import load_engine, seed_sampling


def _write_result(folder: Path, result: dict) -> None:
    with staged_dir(folder) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(result["metrics"], indent=2) + "\n", encoding="utf-8")
        with (tmp / "samples.jsonl").open("w", encoding="utf-8") as out:
            for row in result.get("samples", []):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


class EvalRecipe:
    """Run ``--eval_dataset`` benchmarks on one loaded model."""

    def __init__(self, config: EvalConfig, host):
        self.config = config
        self.host = host

    def setup(self) -> None:
        self.config = with_run_data_args(self.config)  # --load_data_args: the run's validation rows
        cfg, host = self.config, self.host
        self.benchmarks = {
            name: choose_from(host, "eval_benchmark", name, config=cfg, registries=host.registries)
            for name in dict.fromkeys(cfg.eval.eval_dataset)
        }
        self.engine, self.info = load_engine(cfg, host)
        seed_sampling(cfg.data.data_seed)

    def run(self) -> dict:
        cfg = self.config
        run_dir = timestamped_path(Path(cfg.eval.eval_output_dir))
        summary = {}
        for name, choice in self.benchmarks.items():
            start = time.time()
            with self.host.guard(choice.plugin, f"benchmark {name!r}"):
                result = choice.value.evaluate(self.engine, cfg)
            if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
                raise PluginError(
                    f"benchmark {name!r} ({choice.label}) returned {type(result).__name__}, not a dict with "
                    "'metrics' (see swiftkit_get_eval_benchmark in docs/reference/hooks.md)"
                )
            _write_result(run_dir / name, result)
            summary[name] = result["metrics"]
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in result["metrics"].items())
            print(f"[swiftkit] eval {name}: {shown} ({time.time() - start:.1f} s)", file=sys.stderr)
        info = {"model": self.info["model_path"], "adapters": self.info["adapters"],
                "template": self.info["template"], "results": summary}
        (run_dir / "summary.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        print(f"[swiftkit] eval: results in {run_dir}", file=sys.stderr)
        return {"output_dir": str(run_dir), "results": summary}
