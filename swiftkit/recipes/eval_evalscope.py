"""``--eval_backend evalscope``: the same ``--eval_dataset`` request, run by evalscope against a server.

Names map onto evalscope's datasets: a swiftkit card with an evalscope counterpart (``mmlu``,
``gsm8k``, ``arc-challenge`` -> ``arc`` subset ``ARC-Challenge``, ...), ``general_mcq=FOLDER`` /
``general_qa=FOLDER`` for local data in evalscope's layouts, and any other name is passed to evalscope
as its own benchmark name. The model is served by a ``swiftkit deploy`` server started in this process
for the duration (or is ``--eval_url``); evalscope runs in its own environment
(:mod:`swiftkit.evaluate.evalscope_backend`) and its scores come back in the native result format.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from swiftkit.config.evaluation import benchmark_spec
from swiftkit.core.errors import ConfigError
from swiftkit.evaluate.evalscope_backend import DEFAULT_ENV_DIR, evalscope_python, run_evalscope
from swiftkit.evaluate.runner import metrics_line
from swiftkit.inference.engine import TransformersEngine

# swiftkit card -> (evalscope dataset, its subsets or None for evalscope's default)
EVALSCOPE_NAMES = {
    "mmlu": ("mmlu", None), "cmmlu": ("cmmlu", None), "ceval": ("ceval", None), "gsm8k": ("gsm8k", None),
    "math-500": ("math_500", None), "arc-challenge": ("arc", ["ARC-Challenge"]), "arc-easy": ("arc", ["ARC-Easy"]),
    "hellaswag": ("hellaswag", None), "truthfulqa-mc1": ("truthful_qa", None), "winogrande": ("winogrande", None),
    "piqa": ("piqa", None), "humaneval": ("humaneval", None), "mbpp": ("mbpp", None),
    "general_mcq": ("general_mcq", None), "general_qa": ("general_qa", None),
}
LOCAL_ONLY = ("general_mcq", "general_qa")


def evalscope_datasets(cfg, registries) -> list[dict]:
    """The evalscope dataset specs of ``--eval_dataset`` (checked before anything loads)."""
    per = cfg.eval.dataset_args()
    out = []
    for spec in dict.fromkeys(cfg.eval.eval_dataset):
        name, path = benchmark_spec(spec)
        if name == "qa":
            raise ConfigError("--eval_backend evalscope: qa is swiftkit's own benchmark; for reference answers in "
                              "evalscope use --eval_dataset general_qa=FOLDER")
        target, subsets = EVALSCOPE_NAMES.get(name, (name, None))
        if path is not None and target not in LOCAL_ONLY:
            raise ConfigError(f"--eval_backend evalscope: {spec}: evalscope reads local data as general_mcq=FOLDER "
                              "or general_qa=FOLDER (its own layouts); run other local layouts with the native backend")
        if path is None and target in LOCAL_ONLY:
            raise ConfigError(f"--eval_backend evalscope: {name} is local data: --eval_dataset {name}=FOLDER")
        if path is not None and not Path(path).exists():
            raise ConfigError(f"--eval_dataset {spec}: {path} does not exist")
        args = dict(per.get(name, {}))
        subsets = args.pop("subsets", subsets)
        if path is not None and subsets is None:
            subsets = local_subsets(Path(path), target)
        local = str(Path(path).resolve()) if path else None
        out.append({"label": spec, "name": name, "evalscope": target, "local_path": local, "subsets": subsets,
                    "args": args})
    return out


def local_subsets(folder: Path, layout: str) -> list[str]:
    """The subsets of a local general_mcq folder (``<subset>_val.csv``) or general_qa folder
    (``<subset>.jsonl``), which evalscope needs named."""
    if not folder.is_dir():
        raise ConfigError(f"--eval_backend evalscope: {layout}={folder} must be a folder (evalscope reads "
                          f"{'<subset>_val.csv' if layout == 'general_mcq' else '<subset>.jsonl'} files in it)")
    suffixes = (".csv", ".jsonl", ".tsv", ".parquet")
    stems = [p.stem for p in folder.iterdir() if p.suffix in suffixes]
    if layout == "general_mcq":
        stems = [s.removesuffix("_val") for s in stems if s.endswith("_val")]
    subsets = sorted(set(stems))
    if not subsets:
        raise ConfigError(f"--eval_backend evalscope: no {layout} files in {folder} (expected "
                          f"{'<subset>_val.csv' if layout == 'general_mcq' else '<subset>.jsonl'})")
    return subsets


def evalscope_runner(cfg) -> str:
    """The interpreter evalscope runs with (created on first use; see --evalscope_env)."""
    return evalscope_python(cfg.eval.evalscope_env or str(DEFAULT_ENV_DIR), create=True)


def run_on_evalscope(cfg, python: str, datasets: list[dict], model, info: dict, work_dir: Path) -> dict:
    """Serve ``model`` (unless --eval_url) and run evalscope on it; results keyed by benchmark name."""
    e, g = cfg.eval, cfg.generation
    generation = {"max_tokens": g.max_new_tokens, "temperature": g.temperature, "top_p": g.top_p}
    with contextlib.ExitStack() as stack:
        if e.eval_url:
            url, served = e.eval_url.rstrip("/"), model.name
        else:
            from swiftkit.serving.background import serve_in_background  # defers fastapi

            served = "swiftkit-eval"
            engine = TransformersEngine(model.model, model.template)
            # The served name runs the model as this spec has it: its peft adapter active, or (the base of
            # --compare base, or no adapters) none; an unnamed base would be served with adapters off.
            peft = hasattr(model.model, "peft_config") and info["adapters"]
            engine.add_model(served, getattr(model.model, "active_adapter", None) if peft else None)
            url = stack.enter_context(serve_in_background(engine, served_name=served,
                                                          max_batch_size=g.max_batch_size))
            print(f"[swiftkit] eval: serving {model.name} at {url} for evalscope", file=sys.stderr)
        results = run_evalscope(python=python, base_url=url, model=served, api_key=e.api_key, datasets=datasets,
                                work_dir=work_dir, limit=e.eval_limit, generation=generation,
                                few_shot=e.eval_few_shot, timeout_s=None, eval_batch_size=e.eval_num_proc,
                                extra=e.extra_args())
    results = {d["label"]: results[d["name"]] for d in datasets}  # keyed as --eval_dataset gave them
    for name, result in results.items():
        primary = result.get("primary_metric")
        scores = [s.get("score", {}).get(primary) if isinstance(s.get("score"), dict) else s.get("score")
                  for s in result.get("samples", [])]
        result.update(primary=primary, higher_is_better=True,
                      item_scores=scores if scores and all(isinstance(v, (int, float)) for v in scores) else None)
        print(f"[swiftkit] eval {name} (evalscope): {metrics_line(result['metrics'])}", file=sys.stderr)
    return results
