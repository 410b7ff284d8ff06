"""Model registry entries and the YAML model cards that describe them.

A model card (``model_registry/<family>.yaml``) lists the models of one family. This module turns a
card into :class:`ModelEntry` objects, checking its schema so that a typo names the file and key.
It also infers a model's family from its ``config.json``. No torch / transformers imports here: the
plugin manager imports this module at CLI start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftkit.cards import check_mapping, read_yaml
from swiftkit.registry import RegistryError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class ModelCardError(RegistryError):
    """A model card (YAML) breaks the schema; the message names the file and the key."""


@dataclass
class ModelEntry:
    """One registered model: where to get it and how to treat it.

    ``family`` is the ``model_type`` of the model's ``config.json`` (``llama``, ``qwen2``); empty
    means "infer it from config.json". ``template`` is the registered template used only when the
    tokenizer has no chat template. ``embedded`` is a file path relative to site-packages (purelib)
    of a GGUF shipped by a Python package, converted on first use.
    """

    name: str
    family: str = ""
    ms_id: str | None = None
    hf_id: str | None = None
    architectures: list[str] = field(default_factory=list)
    template: str | None = None
    requires: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    embedded: str | None = None
    description: str = ""
    override: bool = False

    def __post_init__(self):
        if not NAME.match(self.name or ""):
            raise ValueError(
                f"model name {self.name!r} must be lowercase letters, digits, '.', '_' or '-'"
            )
        if not (self.ms_id or self.hf_id or self.embedded):
            raise ValueError(f"model {self.name!r} needs at least one of ms_id, hf_id or embedded")


# --- model cards ---------------------------------------------------------------------------------

# key -> (accepted types, required). ``None`` in the types means the key may be null.
_FAMILY_KEYS: dict[str, tuple[tuple, bool]] = {
    "family": ((str,), True),
    "architectures": ((list,), True),
    "template": ((str, type(None)), False),
    "requires": ((list,), False),
    "tags": ((list,), False),
    "description": ((str,), False),
    "models": ((list,), True),
}
_MODEL_KEYS: dict[str, tuple[tuple, bool]] = {
    "name": ((str,), True),
    "ms_id": ((str, type(None)), True),
    "hf_id": ((str, type(None)), True),
    "tags": ((list,), False),
    "embedded": ((str, type(None)), False),
    "template": ((str, type(None)), False),
    "description": ((str,), False),
}
_LIST_OF_STR = {"architectures", "requires", "tags"}


# Model cards name a bad key by its path in the file: ``<file>.models[0].hf_id``.
_MESSAGES = {"type": "{where}.{key}: expected {expected}, got {got} {value!r}"}


def _check_mapping(data: Any, schema: dict, where: str) -> None:
    """Unknown keys, missing keys and wrong types raise ModelCardError naming ``where.key``."""
    check_mapping(data, schema, where, ModelCardError, _MESSAGES)
    for key, value in data.items():
        if key in _LIST_OF_STR and not all(isinstance(v, str) and v for v in value):
            raise ModelCardError(
                f"{where}.{key}: expected a list of non-empty strings, got {value!r}"
            )
        if isinstance(value, str) and not value.strip():
            raise ModelCardError(f"{where}.{key}: must not be empty")


def entries_from_card(data: Any, where: str) -> list[ModelEntry]:
    """Validate one parsed card and return its entries; ``where`` prefixes every error (the file)."""
    _check_mapping(data, _FAMILY_KEYS, where)
    family = data["family"]
    if family != family.lower():
        raise ModelCardError(
            f"{where}.family: {family!r} must be lowercase (the config.json model_type)"
        )
    if not data["models"]:
        raise ModelCardError(f"{where}.models: the list is empty")
    entries, seen = [], set()
    for i, model in enumerate(data["models"]):
        at = f"{where}.models[{i}]"
        _check_mapping(model, _MODEL_KEYS, at)
        name = model["name"]
        if not NAME.match(name):
            raise ModelCardError(
                f"{at}.name: {name!r} must be lowercase letters, digits, '.', '_' or '-'"
            )
        if name in seen:
            raise ModelCardError(f"{at}.name: {name!r} appears twice in this file")
        seen.add(name)
        for key in ("ms_id", "hf_id"):
            if model[key] is not None and not HUB_ID.match(model[key]):
                raise ModelCardError(
                    f"{at}.{key}: {model[key]!r} is not a hub id of the form owner/name"
                )
        if not (model["ms_id"] or model["hf_id"] or model.get("embedded")):
            raise ModelCardError(f"{at}: {name!r} needs ms_id, hf_id or embedded (all are null)")
        tags = list(dict.fromkeys([*data.get("tags", []), *model.get("tags", [])]))
        entries.append(
            ModelEntry(
                name=name,
                family=family,
                ms_id=model["ms_id"],
                hf_id=model["hf_id"],
                architectures=list(data["architectures"]),
                template=model.get("template", data.get("template")),
                requires=list(data.get("requires", [])),
                tags=tags,
                embedded=model.get("embedded"),
                description=model.get("description", data.get("description", "")),
            )
        )
    return entries


def load_model_card(path: str | Path) -> list[ModelEntry]:
    """Read and validate one ``<family>.yaml`` model card."""
    return entries_from_card(read_yaml(path, ModelCardError, "model card"), str(Path(path)))


# --- model type inference ------------------------------------------------------------------------


def _default_registry():
    from swiftkit.plugins import default_registries

    return default_registries().models


def _entries(registry) -> list[ModelEntry]:
    return [entry for _name, entry in registry.items()]


def known_families(registry=None) -> set[str]:
    """The families (model types) of every registered model."""
    registry = _default_registry() if registry is None else registry
    return {entry.family for entry in _entries(registry) if entry.family}


def infer_model_type(config: dict, registry=None) -> str | None:
    """The family of a model from its parsed ``config.json``.

    The ``architectures`` listed in the config are matched against the registered families first;
    when several families share an architecture the one equal to ``model_type`` wins. Without a
    match the config's own ``model_type`` is returned (``None`` when it has none).
    """
    registry = _default_registry() if registry is None else registry
    by_arch: dict[str, set[str]] = {}
    for entry in _entries(registry):
        for arch in entry.architectures if entry.family else ():
            by_arch.setdefault(arch, set()).add(entry.family)
    model_type = config.get("model_type") or None
    for arch in config.get("architectures") or []:
        families = by_arch.get(arch)
        if families:
            return model_type if model_type in families else min(families)
    return model_type
