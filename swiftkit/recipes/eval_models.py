"""The models an evaluation scores: the one of --model/--adapters (or --eval_url), and those of --compare.

Each model is opened only when its turn comes and closed before the next (one copy in memory at a
time). ``--compare base`` with LoRA adapters needs no second load: the same model is scored with its
adapters switched off (peft's ``disable_adapter``), under the same template; a full fine-tune's base is
loaded from the run's record with the run's template.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from pathlib import Path

from swiftkit.core.checkpoints import find_checkpoint, read_train_args
from swiftkit.core.errors import ConfigError
from swiftkit.evaluate.engine_model import EngineEvalModel
from swiftkit.evaluate.local import LocalEvalModel
from swiftkit.evaluate.remote import RemoteEvalModel
from swiftkit.inference.loading import load_for_inference
from swiftkit.recipes.engines import load_engine


@dataclasses.dataclass
class ModelSpec:
    label: str
    adapters: list[str] | None  # None: --model alone (or the base of the run: see base_of)
    base_of: bool = False  # the base model of the main --adapters


def model_specs(cfg) -> list[ModelSpec]:
    """The models in report order: --compare's entries (the first is the baseline), then the main one."""
    main_label = Path(cfg.adapter.adapters[0]).name if cfg.adapter.adapters else (cfg.model.model or "model")
    specs = []
    for entry in cfg.eval.compare:
        if entry == "base":
            specs.append(ModelSpec("base", None, base_of=True))
        else:
            specs.append(ModelSpec(Path(entry).name or entry, [entry]))
    specs.append(ModelSpec("tuned" if any(s.base_of for s in specs) else main_label, None))
    # labels must be unique: they name result folders and report columns
    for spec, label in zip(specs, unique_names([s.label for s in specs])):
        spec.label = label
    return specs


def unique_names(names: list[str]) -> list[str]:
    """``names`` with each repeat numbered: ``x``, ``x-2``, ``x-3`` (never a name already taken)."""
    taken: set[str] = set()
    out = []
    for name in names:
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}-{n}", n + 1
        taken.add(unique)
        out.append(unique)
    return out


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".json")


def weights_fingerprint(info: dict) -> str:
    """Names, sizes and modification times of the weight and config files of the evaluated model and
    adapters (a URL for a server): rewritten weights under the same path get a new fingerprint."""
    parts = []
    for where in [info.get("model_path"), *info.get("adapters", [])]:
        folder = Path(str(where))
        if not folder.is_dir():
            parts.append(str(where))
            continue
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix in WEIGHT_SUFFIXES:
                stat = f.stat()
                parts.append(f"{f}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def _free(model) -> None:
    del model
    gc.collect()
    with contextlib.suppress(Exception):
        import torch  # defers torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@contextlib.contextmanager
def open_model(cfg, host, spec: ModelSpec, loaded: dict):
    """Yield ``(EvalModel, info)`` for ``spec``. ``loaded`` keeps the main model between the base and main
    specs when the base is the main model with its adapters off."""
    if cfg.eval.eval_url:
        model = RemoteEvalModel(cfg.eval.eval_url, cfg.eval.eval_model, api_key=cfg.eval.api_key,
                                concurrency=cfg.eval.eval_num_proc)
        yield model, {"model_path": cfg.eval.eval_url, "adapters": [], "template": "server's", "served": model.name}
        return
    batch = cfg.generation.max_batch_size
    if cfg.generation.infer_backend != "transformers":  # vllm or a plugin's engine: generation only
        yield from _engine_model(cfg, host, spec, loaded)
        return
    if spec.base_of or spec.adapters is None:
        if "main" not in loaded:
            loaded["main"] = load_for_inference(cfg, registries=host.registries)
        model, template, info = loaded["main"]
        if spec.base_of:
            if hasattr(model, "disable_adapter") and info["adapters"] and not info["merged"]:
                with model.disable_adapter():
                    base = LocalEvalModel(model, template, name=f"{info['model_path']} (adapters off)",
                                          batch_size=batch)
                    yield base, {**info, "adapters": []}
                return
            base_cfg = _base_config(cfg, info)
            model_b, template_b, info_b = load_for_inference(base_cfg, registries=host.registries, adapters=[])
            try:
                yield LocalEvalModel(model_b, template_b, name=info_b["model_path"], batch_size=batch), info_b
            finally:
                _free(model_b)
            return
        name = " + ".join([info["model_path"], *info["adapters"]])
        try:
            yield LocalEvalModel(model, template, name=name, batch_size=batch), info
        finally:
            loaded.pop("main", None)
            _free(model)
        return
    model, template, info = load_for_inference(cfg, registries=host.registries, adapters=spec.adapters)
    try:
        yield LocalEvalModel(model, template, name=" + ".join([info["model_path"], *info["adapters"]]),
                             batch_size=batch), info
    finally:
        _free(model)


def _engine_model(cfg, host, spec: ModelSpec, loaded: dict):
    """An engine-backed model (generation only) for ``spec``."""
    if spec.base_of:
        info = {"train_args": read_train_args(find_checkpoint(cfg.adapter.adapters[0]))[0], "template": None}
        engine, info = load_engine(_base_config(cfg, info), host, adapters=[])
    else:
        engine, info = load_engine(cfg, host, adapters=spec.adapters)
    name = " + ".join([info["model_path"], *info["adapters"]])
    yield EngineEvalModel(engine, name=name, backend=cfg.generation.infer_backend), info


def _base_config(cfg, info: dict):
    """The config that loads the base model of a full-weights run, with that run's template."""
    base = (info.get("train_args") or {}).get("model") or (info.get("settings") or {}).get("model")
    if not base:
        raise ConfigError("--compare base: the base model of --adapters is not recorded in its args.json; "
                          "compare with --compare BASE_MODEL_PATH instead")
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, model=base),
        adapter=dataclasses.replace(cfg.adapter, adapters=[]),
        template=dataclasses.replace(cfg.template, template=cfg.template.template or info.get("template")),
    )
