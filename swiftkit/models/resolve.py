"""Turn ``--model`` into a local model directory.

Resolution order:

1. an existing local directory holding ``config.json`` (a transformers checkpoint), or a GGUF artifact: a
   ``*.gguf`` file's path, or a folder without ``config.json`` that holds exactly one ``*.gguf`` file
   (:attr:`ResolvedModel.gguf_file` names it; transformers dequantizes it as it loads);
2. a registered short name (``swiftkit list models``): an embedded model is converted once into
   the cache, any other is downloaded by its ModelScope id (HF id with ``use_hf``), falling back
   to the other hub when the wanted id is not registered;
3. a hub id ``owner/name``: downloaded from ModelScope, or the Hugging Face hub with ``use_hf``;
4. anything else is an unknown name, reported with the closest registered one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from swiftkit.core.checkpoints import check_files
from swiftkit.core.registry import RegistryError, closest
from swiftkit.models import embedded, hub
from swiftkit.models.artifacts import check_gguf_file, find_gguf, gguf_model_type
from swiftkit.models.errors import ModelNotFoundError
from swiftkit.models.registry import (
    HUB_ID,
    ModelEntry,
    infer_model_type,
    known_families,
    model_types,
    type_candidates,
)


@dataclass
class ResolvedModel:
    """A model found on disk, ready for ``from_pretrained``."""

    path: str  # local directory with config.json, weights and tokenizer files
    model_type: str | None  # config.json model_type, when known
    entry: ModelEntry | None  # the registry entry: the registered model, or its model type's
    source: str  # "local" | "embedded" | "modelscope" | "hf"
    name: str  # what the user passed
    candidates: tuple[str, ...] = ()  # registry types that fit config.json when none was chosen
    gguf_file: str | None = None  # the GGUF file in ``path`` to load (``from_pretrained(gguf_file=...)``)


def default_cache_dir() -> Path:
    """Where downloads and conversions go unless ``cache_dir`` is given: ~/.cache/swiftkit."""
    return Path("~/.cache/swiftkit").expanduser()


def _looks_like_path(model: str) -> bool:
    return (
        model in (".", "..")
        or model.startswith(("./", "../", "~", "/"))
        or os.path.isabs(model)
        or model.count("/") > 1
        or "\\" in model
    )


def _check_model_dir(path: Path, model: str) -> str | None:
    """Check the model folder ``path``; the name of its GGUF file when it is a GGUF artifact, else None."""
    if (path / "config.json").is_file():
        check_files(path, "--model")  # a damaged or pickled file is one line naming it, before loading
        return None
    gguf = find_gguf(path, model)
    if gguf is not None:
        check_gguf_file(path / gguf, model)
        return gguf
    hint = ""
    if (path / "adapter_config.json").is_file():
        hint = " It holds a LoRA adapter (adapter_config.json): pass it as --adapters instead."
    raise ModelNotFoundError(
        f"model directory {str(path)!r} (from --model {model!r}) has no config.json: a model "
        f"directory needs config.json, the weights (*.safetensors) and the tokenizer files, or one *.gguf file.{hint}"
    )


def _advice(use_hf: bool) -> str:
    other = (
        "drop --use_hf to try ModelScope" if use_hf else "add --use_hf to try the Hugging Face hub"
    )
    return f"Pass a local model directory (with config.json) as --model, or {other}"


def _hub_cache(cache: Path, which: str) -> Path:
    return cache / ("huggingface" if which == "hf" else "modelscope")


def _from_entry(entry: ModelEntry, use_hf: bool, revision, cache: Path) -> tuple[str, str]:
    if entry.embedded:
        return str(embedded.materialize(entry.name, entry.embedded, cache)), "embedded"
    which, model_id = ("hf", entry.hf_id) if use_hf else ("modelscope", entry.ms_id)
    advice = _advice(use_hf)
    if model_id is None:
        missing = hub.HUB_NAMES[which]
        which, model_id = ("modelscope", entry.ms_id) if use_hf else ("hf", entry.hf_id)
        advice = (
            f" (no {missing} id is registered for {entry.name!r}, so {hub.HUB_NAMES[which]} was "
            "tried instead). Pass a local model directory (with config.json) as --model"
        )
    path = hub.download(
        model_id, which, revision=revision, cache_dir=_hub_cache(cache, which), advice=advice
    )
    return path, which


def _read_config(path: Path) -> dict:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{path / 'config.json'}: cannot be read as JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelNotFoundError(f"{path / 'config.json'}: expected a JSON object")
    return config


def _type_of(explicit: str | None, entry: ModelEntry | None, config: dict, registry):
    """``(config model_type, the entry whose type fields apply, candidate types when ambiguous)``."""
    if explicit:
        types = model_types(registry)
        if explicit in types:
            chosen = types[explicit]
            return chosen.model_type, entry if entry is not None else chosen, ()
        families = known_families(registry)
        if explicit.lower() in families:
            return explicit.lower(), entry, ()
        raise RegistryError(
            f"unknown --model_type {explicit!r}{closest(explicit, list(types))}; "
            "`swiftkit list models --json` lists the registered types"
        )
    if entry is not None and entry.type:
        return entry.model_type, entry, ()
    candidates = type_candidates(config, registry)
    model_type = infer_model_type(config, registry)
    if len(candidates) == 1:
        return model_type, entry or candidates[0], ()
    return model_type, entry, tuple(sorted(c.type for c in candidates))


def _registered_by_hub_id(model: str, use_hf: bool, registry) -> ModelEntry | None:
    """The registered entry whose id on the selected hub is ``model``."""
    for _name, entry in registry.items():
        if model == (entry.hf_id if use_hf else entry.ms_id):
            return entry
    return None


def resolve_model(
    model: str,
    *,
    model_type: str | None = None,
    use_hf: bool = False,
    revision: str | None = None,
    cache_dir: str | None = None,
    registry,
) -> ResolvedModel:
    """Find (download, convert) ``model`` and return where it is on disk; see the module docstring."""
    if not isinstance(model, str) or not model.strip():
        raise ModelNotFoundError(
            "no model given: pass --model with a local directory, a hub id or a registered name"
        )
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    local = Path(model).expanduser()
    entry = None
    gguf_file = None
    if local.is_dir():
        path, source = str(local.resolve()), "local"
    elif local.is_file() and local.suffix.lower() == ".gguf":
        gguf_file = local.name  # the folder is resolved, not the file: a linked file keeps its name
        path, source = str(local.absolute().parent.resolve()), "local"
        check_gguf_file(Path(path) / gguf_file, model)
    elif local.exists():
        raise ModelNotFoundError(
            f"--model {model!r} is a file; pass the directory that holds config.json, or a .gguf file"
        )
    elif _looks_like_path(model):
        raise ModelNotFoundError(f"local model directory {model!r} does not exist")
    elif model in registry:
        entry = registry.get(model)
        path, source = _from_entry(entry, use_hf, revision, cache)
    elif "/" in model:
        if not HUB_ID.match(model):
            raise ModelNotFoundError(
                f"{model!r} is neither a local directory nor a hub id (owner/name)"
            )
        entry = _registered_by_hub_id(model, use_hf, registry)
        source = "hf" if use_hf else "modelscope"
        path = hub.download(
            model,
            source,
            revision=revision,
            cache_dir=_hub_cache(cache, source),
            advice=_advice(use_hf),
        )
    else:
        raise ModelNotFoundError(
            f"unknown model {model!r}{closest(model.lower(), registry)}; pass a local directory, a hub "
            "id (owner/name) or a registered name (`swiftkit list models`)"
        )
    folder = Path(path)
    if gguf_file is None:
        gguf_file = _check_model_dir(folder, model)
    if gguf_file is not None:
        config = {"model_type": gguf_model_type(folder / gguf_file)}
    else:
        config = _read_config(folder)
    family, entry, candidates = _type_of(model_type, entry, config, registry)
    return ResolvedModel(
        path=str(folder), model_type=family, entry=entry, source=source, name=model, candidates=candidates,
        gguf_file=gguf_file,
    )
