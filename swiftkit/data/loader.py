"""Turn ``--dataset`` specs into canonical rows; split off validation rows; fingerprint rows.

A spec is ``SOURCE`` or ``SOURCE#N``. SOURCE is tried, in order, as a local file or folder, a
registered dataset name, then a hub id ``org/name``. ``#N`` samples N rows with the seed (N larger
than the data repeats it: whole copies plus a seeded sample of the rest). Rows keep file order
unless a spec is sampled or several specs are mixed; then the result is shuffled with the seed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

from swiftkit.data.convert import rename_columns, to_messages_row, to_text_row
from swiftkit.data.errors import DatasetError
from swiftkit.data.readers import SUPPORTED_SUFFIXES, read_file, read_folder

_SAMPLED = re.compile(r"(.+)#(\d+)")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``"name#N"`` -> ``("name", N)``; ``"name"`` -> ``("name", None)``."""
    match = _SAMPLED.fullmatch(spec.strip())
    if match:
        count = int(match.group(2))
        if count <= 0:
            raise DatasetError(f"--dataset {spec!r}: the row count after '#' must be > 0")
        return match.group(1), count
    if "#" in spec and not Path(spec).exists():
        raise DatasetError(f"--dataset {spec!r}: expected SOURCE or SOURCE#N with N a positive integer")
    return spec.strip(), None


def hub_source(entry, use_hf: bool) -> tuple[str, bool]:
    """``(hub id, is Hugging Face)`` for a hub entry: the selected hub when the entry has an id
    there, otherwise the hub it does name."""
    hf = bool(entry.hf_id) and (use_hf or not entry.ms_id)
    return (entry.hf_id if hf else entry.ms_id), hf


def _entry_rows(entry, *, use_hf: bool, cache_dir, model_name, model_author, preprocessors) -> list[dict]:
    from swiftkit.data.hub import load_hub_rows
    from swiftkit.data.registry import resolve_entry_path

    rows: list[dict] = []
    for subset in entry.subsets or [None]:  # several subsets are read one after another
        if entry.path:
            path = resolve_entry_path(entry)
            rows += read_folder(path, subset, entry.split) if path.is_dir() else read_file(path)
        else:
            hub_id, hf = hub_source(entry, use_hf)
            rows += load_hub_rows(hub_id, use_hf=hf, subset=subset, split=entry.split, cache_dir=cache_dir)
    rows = [rename_columns(row, entry.columns) for row in rows]
    if entry.preprocessor:
        if preprocessors is None:
            from swiftkit.plugins import default_registries

            preprocessors = default_registries().preprocessors
        if entry.preprocessor not in preprocessors:
            raise DatasetError(f"dataset {entry.name!r}: unknown preprocessor {entry.preprocessor!r}")
        rows = preprocessors.get(entry.preprocessor)(
            rows, model_name=model_name, model_author=model_author, source=entry.name
        )
    return rows


def _raw_rows(source: str, *, registry, **kw) -> list[dict]:
    path = Path(source).expanduser()
    if path.is_dir():
        return read_folder(path)
    if path.exists() or path.suffix.lower() in SUPPORTED_SUFFIXES:
        return read_file(path)
    if registry is None:
        from swiftkit.plugins import default_registries

        registry = default_registries().datasets
    if source in registry:
        return _entry_rows(registry.get(source), **kw)
    if _HUB_ID.fullmatch(source):
        from swiftkit.data.hub import load_hub_rows

        return load_hub_rows(source, use_hf=kw["use_hf"], cache_dir=kw["cache_dir"])
    from swiftkit.registry import closest

    raise DatasetError(
        f"--dataset {source!r} is not a file, a folder, a registered dataset{closest(source.lower(), registry)} "
        "or a hub id (org/name); `swiftkit list datasets` shows the registered ones"
    )


def sample_rows(rows: list[dict], count: int, seed: int) -> list[dict]:
    """``count`` rows drawn with ``seed``; beyond ``len(rows)``: whole copies plus a sample of the rest."""
    rng = random.Random(seed)
    if count <= len(rows):
        return [rows[i] for i in rng.sample(range(len(rows)), count)]
    copies, rest = divmod(count, len(rows))
    picked = list(range(len(rows))) * copies + rng.sample(range(len(rows)), rest)
    return [copy.deepcopy(rows[i]) for i in picked]


def load_rows(specs: Sequence[str], *, registry=None, seed: int = 42, model_name: Sequence[str] = (),
              model_author: Sequence[str] = (), use_hf: bool = False, cache_dir: str | None = None,
              text_only: bool = False, require_reply: bool = True, preprocessors=None) -> list[dict]:
    """Canonical rows of every spec, concatenated; mixed or sampled data is shuffled with ``seed``.

    Rows are ``{"messages": [...], "_origin": "path:line"}``, or ``{"text": ..., "_origin": ...}``
    with ``text_only`` (pretraining). ``require_reply=False`` accepts prompts that end on a user
    turn (inference). ``preprocessors`` is the preprocessor registry (default: the built-in and
    installed plugins'). Any bad input raises :class:`DatasetError` naming its place.
    """
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise DatasetError("no dataset given: pass --dataset FILE|NAME|ORG/NAME[#N]")
    if text_only:
        convert = to_text_row
    else:
        def convert(row):
            return to_messages_row(row, require_reply)
    rows: list[dict] = []
    shuffle = len(specs) > 1
    for spec in specs:
        source, count = parse_spec(spec)
        raw = _raw_rows(source, registry=registry, preprocessors=preprocessors, use_hf=use_hf, cache_dir=cache_dir,
                        model_name=tuple(model_name), model_author=tuple(model_author))
        if not raw:
            raise DatasetError(f"--dataset {spec!r}: the data has no rows")
        canonical = [convert(row) for row in raw]
        if count is not None:
            canonical = sample_rows(canonical, count, seed)
            shuffle = True
        rows.extend(canonical)
    if shuffle:
        random.Random(seed).shuffle(rows)
    return rows


def split_rows(rows: list[dict], ratio: float, seed: int = 42) -> tuple[list[dict], list[dict]]:
    """``(train, val)``: a seeded ``ratio`` share of the rows (at least one when ratio > 0 and
    there are two rows or more, never all of them) becomes validation; both keep the input order."""
    if not 0.0 <= ratio < 1.0:
        raise DatasetError(f"split ratio must be in [0, 1), got {ratio}")
    if ratio == 0.0 or len(rows) < 2:
        return list(rows), []
    n_val = min(len(rows) - 1, max(1, round(len(rows) * ratio)))
    val_idx = set(random.Random(seed).sample(range(len(rows)), n_val))
    train = [row for i, row in enumerate(rows) if i not in val_idx]
    val = [row for i, row in enumerate(rows) if i in val_idx]
    return train, val


def data_fingerprint(rows: list[dict]) -> str:
    """sha256 hex of the rows' content in order (``_origin`` ignored)."""
    digest = hashlib.sha256()
    for row in rows:
        content = {k: v for k, v in row.items() if k != "_origin"}
        digest.update(json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()
