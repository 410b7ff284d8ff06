"""Dataset registry entries and the schema-checked YAML cards in ``dataset_registry/``.

A card is a YAML file with one top-level key, ``datasets``, holding a list of entries; each entry
has the fields of :class:`DatasetEntry`. Unknown or missing keys and wrong types are errors that
name the card file, the entry and the key. This module imports no torch/transformers/datasets: the
plugin manager imports it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from swiftkit.config.columns import check_columns
from swiftkit.core.cards import check_mapping, read_yaml
from swiftkit.core.resources import data_dir
from swiftkit.data.errors import DatasetError


@dataclass
class DatasetEntry:
    """One registered dataset: where its rows live and how to read them.

    ``path`` is a local file or folder (relative to ``dataset_registry/`` or absolute); otherwise
    the rows come from the hub: ``ms_id`` on ModelScope (the default) or ``hf_id`` on the Hugging
    Face hub (``--use_hf``). ``columns`` renames source columns to canonical ones
    (:data:`CANONICAL_COLUMNS`) before the row format is detected; a column mapped to null is
    dropped. ``preprocessor`` names a
    row transform registered through ``swiftkit_register_preprocessors`` (e.g. ``self_cognition``).
    """

    name: str
    path: str | None = None
    ms_id: str | None = None
    hf_id: str | None = None
    subsets: list[str] = field(default_factory=list)
    split: str = "train"
    columns: dict[str, str | None] = field(default_factory=dict)
    preprocessor: str | None = None
    tags: list[str] = field(default_factory=list)
    description: str = ""
    override: bool = False


# Exactly one of these tags says what an entry trains: the command and row shape it is for.
TASK_TAGS = ("sft", "pretrain", "preference", "kto", "reward", "grpo")

# key -> (accepted types, required, the accepted value as error messages name it)
_OPTIONAL_STR = ((str, type(None)), False, "a string or null")
_SCHEMA: dict[str, tuple[tuple[type, ...], bool, str]] = {
    "name": ((str,), True, "a string"),
    "path": _OPTIONAL_STR,
    "ms_id": _OPTIONAL_STR,
    "hf_id": _OPTIONAL_STR,
    "subsets": ((list,), False, "a list of subset (config) names"),
    "split": ((str,), False, "a string"),
    "columns": ((dict,), False, "a mapping of source column -> canonical column"),
    "preprocessor": _OPTIONAL_STR,
    "tags": ((list,), False, "a list of strings"),
    "description": ((str,), False, "a string"),
    "override": ((bool,), False, "true or false"),
}
_MESSAGES = {"yaml": "{path}: invalid YAML{at}: {problem}", "missing": "{where}: missing key {key!r}"}
assert set(_SCHEMA) == {f.name for f in fields(DatasetEntry)}


def entry_from_mapping(data: Any, where: str) -> DatasetEntry:
    """Validate one card entry (``where`` names it in errors) and build the :class:`DatasetEntry`."""
    check_mapping(data, _SCHEMA, where, DatasetError, _MESSAGES)
    if not data["name"].strip():
        raise DatasetError(f"{where}: key 'name' is empty")
    if not any(data.get(k) for k in ("path", "ms_id", "hf_id")):
        raise DatasetError(f"{where}: needs at least one of the keys 'path', 'ms_id', 'hf_id'")
    check_columns(data.get("columns", {}), f"{where}: key 'columns'", DatasetError)
    if not all(isinstance(t, str) and t for t in data.get("subsets", [])):
        raise DatasetError(f"{where}: key 'subsets' must be a list of non-empty strings")
    tags = data.get("tags", [])
    if not all(isinstance(t, str) and t == t.strip().lower() and t for t in tags):
        raise DatasetError(f"{where}: key 'tags' must be a list of lowercase strings")
    tasks = [t for t in tags if t in TASK_TAGS]
    if len(tasks) != 1:
        raise DatasetError(
            f"{where}: tags need exactly one task tag of {', '.join(TASK_TAGS)}; got {tasks or 'none'}"
        )
    # Whether the preprocessor exists is checked once every plugin has registered its own.
    return DatasetEntry(**data)


def load_card(path: str | Path) -> list[DatasetEntry]:
    """The entries of one YAML card; any schema problem raises :class:`DatasetError` naming the file."""
    path = Path(path)
    data = read_yaml(path, DatasetError, "dataset card", _MESSAGES)
    if not isinstance(data, dict) or "datasets" not in data:
        raise DatasetError(f"{path}: a dataset card needs a top-level key 'datasets' (a list of entries)")
    extra = sorted(set(data) - {"datasets"})
    if extra:
        raise DatasetError(f"{path}: unknown top-level key {extra[0]!r}; only 'datasets' is allowed")
    items = data["datasets"]
    if not isinstance(items, list) or not items:
        raise DatasetError(f"{path}: key 'datasets' must be a non-empty list of entries")
    entries = [entry_from_mapping(item, f"{path}: datasets[{i}]") for i, item in enumerate(items)]
    names = [e.name.lower() for e in entries]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise DatasetError(f"{path}: datasets[{i}]: name {entries[i].name!r} appears twice in this card")
    return entries


def load_cards(folder: str | Path) -> list[tuple[DatasetEntry, Path]]:
    """Every entry of every ``*.yaml`` card in ``folder`` (sorted by file name), with its card path."""
    return [(entry, card) for card in sorted(Path(folder).glob("*.yaml")) for entry in load_card(card)]


def resolve_entry_path(entry: DatasetEntry) -> Path:
    """``entry.path`` as an absolute path (relative paths are inside ``dataset_registry/``)."""

    path = Path(entry.path).expanduser()
    return path if path.is_absolute() else data_dir("dataset_registry") / path
