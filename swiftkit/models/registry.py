"""Model registry entries and the YAML model cards that describe them.

A card (``model_registry/<family>.yaml``) lists the **model types** of one family; a model type
groups the checkpoints that share an architecture, a template, a context length and tags, and
lists them with their ModelScope / Hugging Face ids::

    family: qwen
    types:
      - type: qwen2_5                    # the registry's model type (``--model_type``)
        model_type: qwen2                # config.json "model_type"
        architectures: [Qwen2ForCausalLM]
        template: null                   # null: the tokenizer's own chat template
        context_length: 32768
        requires: ["transformers>=4.37"]
        tags: [chat]
        lora_target_modules: null        # null: all-linear works; else the modules to adapt
        description: ...
        models:
          - {name: qwen2.5-7b-instruct, ms_id: Qwen/Qwen2.5-7B-Instruct, hf_id: Qwen/Qwen2.5-7B-Instruct}

Every model becomes one :class:`ModelEntry` carrying its type's fields. A schema problem names
the file and the key path (``qwen.yaml.types[3].models[0].hf_id``). This module also infers the
type of an unregistered model from its ``config.json``. No torch / transformers imports: the
plugin manager imports it at CLI start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftkit.core.cards import check_mapping, read_yaml
from swiftkit.core.registry import RegistryError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
TYPE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
TAGS = ("chat", "base", "reasoning", "code", "math", "moe", "vision", "remote-code", "tools",
        "long-context", "multilingual", "quantized")


class ModelCardError(RegistryError):
    """A model card (YAML) breaks the schema; the message names the file and the key."""


@dataclass
class ModelEntry:
    """One registered model: where to get it and how to treat it.

    ``type`` is the registry's model type (``qwen2_5``), ``model_type`` the ``config.json``
    ``model_type`` (``qwen2``; empty means "infer it from config.json") and ``family`` the card's
    family (``qwen``). ``template`` is the registered template used only when the tokenizer has no
    chat template. ``lora_target_modules`` replaces ``all-linear`` when set. ``embedded`` is a
    file path relative to site-packages (purelib) of a GGUF shipped by a Python package,
    converted on first use.
    """

    name: str
    type: str = ""
    model_type: str = ""
    family: str = ""
    ms_id: str | None = None
    hf_id: str | None = None
    architectures: list[str] = field(default_factory=list)
    template: str | None = None
    context_length: int | None = None
    requires: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    lora_target_modules: list[str] | None = None
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

_OPT_STR = ((str, type(None)), False)
_CARD_KEYS: dict[str, tuple[tuple, bool]] = {
    "family": ((str,), True),
    "types": ((list,), True),
}
_TYPE_KEYS: dict[str, tuple[tuple, bool]] = {
    "type": ((str,), True),
    "model_type": ((str,), True),
    "architectures": ((list,), True),
    "template": _OPT_STR,
    "context_length": ((int, type(None)), False),
    "requires": ((list,), False),
    "tags": ((list,), False),
    "lora_target_modules": ((list, type(None)), False),
    "description": ((str,), False),
    "models": ((list,), True),
}
_MODEL_KEYS: dict[str, tuple[tuple, bool]] = {
    "name": ((str,), True),
    "ms_id": ((str, type(None)), True),
    "hf_id": ((str, type(None)), True),
    "tags": ((list,), False),
    "embedded": _OPT_STR,
    "template": _OPT_STR,
    "description": ((str,), False),
    "override": ((bool,), False),
}
_LIST_OF_STR = {"architectures", "requires", "tags", "lora_target_modules"}

# Model cards name a bad key by its path in the file: ``<file>.types[0].models[1].hf_id``.
_MESSAGES = {"type": "{where}.{key}: expected {expected}, got {got} {value!r}"}


def _check_mapping(data: Any, schema: dict, where: str) -> None:
    """Unknown keys, missing keys and wrong types raise ModelCardError naming ``where.key``."""
    check_mapping(data, schema, where, ModelCardError, _MESSAGES)
    for key, value in data.items():
        if key in _LIST_OF_STR and value is not None and not all(isinstance(v, str) and v for v in value):
            raise ModelCardError(f"{where}.{key}: expected a list of non-empty strings, got {value!r}")
        if isinstance(value, str) and not value.strip():
            raise ModelCardError(f"{where}.{key}: must not be empty")


def _check_tags(tags: list[str], where: str) -> None:
    unknown = [t for t in tags if t not in TAGS]
    if unknown:
        raise ModelCardError(f"{where}.tags: unknown tag {unknown[0]!r}; allowed: {', '.join(TAGS)}")


def _model_entries(spec: dict, family: str, at: str) -> list[ModelEntry]:
    _check_mapping(spec, _TYPE_KEYS, at)
    type_name = spec["type"]
    if not TYPE_NAME.match(type_name):
        raise ModelCardError(f"{at}.type: {type_name!r} must be lowercase letters, digits, '.', '_' or '-'")
    if spec["model_type"] != spec["model_type"].lower():
        raise ModelCardError(f"{at}.model_type: {spec['model_type']!r} must be lowercase (config.json model_type)")
    if spec.get("context_length") is not None and spec["context_length"] <= 0:
        raise ModelCardError(f"{at}.context_length: must be a positive integer")
    _check_tags(spec.get("tags", []), at)
    if not spec["models"]:
        raise ModelCardError(f"{at}.models: the list is empty")
    entries = []
    for j, model in enumerate(spec["models"]):
        where = f"{at}.models[{j}]"
        _check_mapping(model, _MODEL_KEYS, where)
        name = model["name"]
        if not NAME.match(name):
            raise ModelCardError(f"{where}.name: {name!r} must be lowercase letters, digits, '.', '_' or '-'")
        for key in ("ms_id", "hf_id"):
            if model[key] is not None and not HUB_ID.match(model[key]):
                raise ModelCardError(f"{where}.{key}: {model[key]!r} is not a hub id of the form owner/name")
        if not (model["ms_id"] or model["hf_id"] or model.get("embedded")):
            raise ModelCardError(f"{where}: {name!r} needs ms_id, hf_id or embedded (all are null)")
        _check_tags(model.get("tags", []), where)
        entries.append(ModelEntry(
            name=name, type=type_name, model_type=spec["model_type"], family=family,
            ms_id=model["ms_id"], hf_id=model["hf_id"], architectures=list(spec["architectures"]),
            template=model.get("template", spec.get("template")), context_length=spec.get("context_length"),
            requires=list(spec.get("requires", [])),
            tags=list(dict.fromkeys([*spec.get("tags", []), *model.get("tags", [])])),
            lora_target_modules=spec.get("lora_target_modules"), embedded=model.get("embedded"),
            description=model.get("description", spec.get("description", "")),
            override=model.get("override", False),
        ))
    return entries


def entries_from_card(data: Any, where: str) -> list[ModelEntry]:
    """Validate one parsed card and return its entries; ``where`` prefixes every error (the file)."""
    _check_mapping(data, _CARD_KEYS, where)
    family = data["family"]
    if family != family.lower():
        raise ModelCardError(f"{where}.family: {family!r} must be lowercase")
    if not data["types"]:
        raise ModelCardError(f"{where}.types: the list is empty")
    entries: list[ModelEntry] = []
    types: set[str] = set()
    names: dict[str, str] = {}
    for i, spec in enumerate(data["types"]):
        at = f"{where}.types[{i}]"
        for entry in _model_entries(spec, family, at):
            if entry.name in names:
                raise ModelCardError(f"{at}: model name {entry.name!r} appears twice in this file "
                                     f"(also in {names[entry.name]})")
            names[entry.name] = at
            entries.append(entry)
        if spec["type"] in types:
            raise ModelCardError(f"{at}.type: {spec['type']!r} appears twice in this file")
        types.add(spec["type"])
    return entries


def load_model_card(path: str | Path) -> list[ModelEntry]:
    """Read and validate one ``<family>.yaml`` model card."""
    return entries_from_card(read_yaml(path, ModelCardError, "model card"), str(Path(path)))


# --- model types ---------------------------------------------------------------------------------


def _entries(registry) -> list[ModelEntry]:
    return [entry for _name, entry in registry.items()]


def model_types(registry) -> dict[str, ModelEntry]:
    """Registry type name -> the first registered entry of that type (its type-level fields)."""
    out: dict[str, ModelEntry] = {}
    for entry in _entries(registry):
        if entry.type:
            out.setdefault(entry.type, entry)
    return out


def known_families(registry) -> set[str]:
    """The config.json ``model_type`` of every registered model."""
    return {entry.model_type for entry in _entries(registry) if entry.model_type}


def type_candidates(config: dict, registry) -> list[ModelEntry]:
    """The registered model types (one entry each) that match a ``config.json``: same architecture
    and, among those, the same ``model_type`` when any has it."""
    types = model_types(registry)
    archs = set(config.get("architectures") or [])
    matches = [e for e in types.values() if archs & set(e.architectures)]
    same = [e for e in matches if e.model_type == config.get("model_type")]
    return same or matches


def infer_model_type(config: dict, registry) -> str | None:
    """The config.json family of a model: its ``model_type`` when registered for one of its
    architectures, else the registered family of its architecture, else its own ``model_type``."""
    candidates = type_candidates(config, registry)
    model_type = config.get("model_type") or None
    families = {e.model_type for e in candidates}
    if not families or model_type in families:
        return model_type
    return min(families)
