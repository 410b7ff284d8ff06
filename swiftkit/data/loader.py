"""Turn ``--dataset`` specs into canonical rows; split off validation rows; fingerprint rows.

A spec is ``[hf::|ms::]SOURCE[:SUBSET1/SUBSET2][#N|#R]``:

* SOURCE is tried, in order, as a local file or folder, a registered dataset name, then a hub id
  ``org/name`` (ModelScope unless ``--use_hf``). ``hf::`` / ``ms::`` force a hub (for a
  registered name: that hub's id).
* ``:SUBSET1/SUBSET2`` picks hub subsets (configurations) or sub-folders, replacing a registered
  entry's own; their rows are read one after another.
* ``#N`` (an integer) samples N rows with the seed (N larger than the data repeats it: whole
  copies plus a seeded sample of the rest); ``#R`` (a number with a decimal point) samples that
  share of the rows (``#0.25`` a quarter, ``#2.0`` every row twice). Mixing datasets with
  ``#N``/``#R`` sets their sampling ratios.

Rows keep file order unless a spec is sampled or several specs are mixed; then the result is
shuffled with the seed. Every unusable row is collected (not just the first): with
``skip_bad_rows`` they are left out and counted, otherwise :class:`BadRowsError` lists them.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swiftkit.core.registry import closest
from swiftkit.data.convert import RowError, check_row_limits, rename_columns, to_messages_row, to_text_row
from swiftkit.data.errors import DatasetError
from swiftkit.data.hub import iter_hub_rows, load_hub_rows
from swiftkit.data.limits import DEFAULT_MAX_ROW_BYTES
from swiftkit.data.readers import SUPPORTED_SUFFIXES, iter_file, iter_folder
from swiftkit.data.registry import resolve_entry_path

_COUNT = re.compile(r"(.+)#(\d+)")
_RATIO = re.compile(r"(.+)#(\d*\.\d+|\d+\.\d*)")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_HUB_PREFIXES = {"hf::": "hf", "ms::": "ms"}
SHOWN_PROBLEMS = 10  # bad rows listed in a BadRowsError; `swiftkit data lint` lists all


@dataclass
class DatasetSpec:
    """One parsed ``--dataset`` value (see the module docstring)."""

    text: str
    source: str
    hub: str | None = None  # "hf" / "ms" when forced by a prefix
    subsets: list[str] = field(default_factory=list)
    count: int | None = None
    ratio: float | None = None

    def sample_size(self, n_rows: int) -> int | None:
        if self.count is not None:
            return self.count
        if self.ratio is not None:
            return max(1, round(self.ratio * n_rows))
        return None


def parse_spec(spec: str) -> DatasetSpec:
    """Parse ``[hf::|ms::]SOURCE[:SUBSETS][#N|#R]``; a spec naming an existing path is a path."""
    text = spec.strip()
    if Path(text).expanduser().exists():
        return DatasetSpec(text, text)
    rest, hub = text, None
    for prefix, name in _HUB_PREFIXES.items():
        if rest.startswith(prefix):
            rest, hub = rest[len(prefix):], name
    count = ratio = None
    if "#" in rest:
        if (m := _COUNT.fullmatch(rest)) is not None:
            rest, count = m.group(1), int(m.group(2))
            if count <= 0:
                raise DatasetError(f"--dataset {spec!r}: the row count after '#' must be > 0")
        elif (m := _RATIO.fullmatch(rest)) is not None:
            rest, ratio = m.group(1), float(m.group(2))
            if ratio <= 0:
                raise DatasetError(f"--dataset {spec!r}: the sampling ratio after '#' must be > 0")
        else:
            raise DatasetError(
                f"--dataset {spec!r}: after '#' expected a positive integer (rows) or a number with a "
                "decimal point (share of the rows), e.g. data.jsonl#500 or data.jsonl#0.5"
            )
    subsets: list[str] = []
    if ":" in rest and not Path(rest).expanduser().exists():
        rest, _, names = rest.rpartition(":")
        subsets = [n for n in names.split("/") if n]
        if not rest or not subsets:
            raise DatasetError(f"--dataset {spec!r}: expected SOURCE:SUBSET[/SUBSET...] around ':'")
    if not rest:
        raise DatasetError(f"--dataset {spec!r}: no dataset name or path")
    return DatasetSpec(text, rest, hub, subsets, count, ratio)


class BadRowsError(DatasetError):
    """Rows that cannot be used; ``problems`` holds every :class:`RowError`."""

    def __init__(self, problems: list[RowError], total: int):
        self.problems, self.total = problems, total
        if len(problems) == 1:
            super().__init__(str(problems[0]))
            return
        kinds = ", ".join(f"{k} {n}" for k, n in Counter(p.kind for p in problems).most_common())
        shown = "\n".join(f"  {p}" for p in problems[:SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        super().__init__(
            f"{len(problems)} of {total} rows are unusable ({kinds}):\n{shown}{more}\n"
            "fix them (`swiftkit data lint` lists every one) or pass --skip_bad_rows to leave them out"
        )


@dataclass
class LoadReport:
    """What loading saw: rows read and the bad rows left out under ``skip_bad_rows``."""

    rows_read: int = 0
    skipped: list[RowError] = field(default_factory=list)

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in Counter(p.kind for p in self.skipped).most_common())
        return f"skipped {len(self.skipped)} of {self.rows_read} rows ({kinds})"


def hub_source(entry, use_hf: bool, forced: str | None = None) -> tuple[str, bool]:
    """``(hub id, is Hugging Face)`` for a hub entry: the forced hub (``"hf"``/``"ms"``) or the
    selected one when the entry has an id there, otherwise the hub it does name."""
    if forced is not None:
        hub_id = entry.hf_id if forced == "hf" else entry.ms_id
        if not hub_id:
            where = "Hugging Face" if forced == "hf" else "ModelScope"
            raise DatasetError(f"dataset {entry.name!r} has no {where} id; drop the '{forced}::' prefix")
        return hub_id, forced == "hf"
    hf = bool(entry.hf_id) and (use_hf or not entry.ms_id)
    return (entry.hf_id if hf else entry.ms_id), hf


PREPROCESS_CHUNK = 1000  # rows handed to a preprocessor at a time when streaming


def _preprocessor(entry, preprocessors):
    if entry.preprocessor not in preprocessors:
        raise DatasetError(f"dataset {entry.name!r}: unknown preprocessor {entry.preprocessor!r}")
    return preprocessors.get(entry.preprocessor)


def _entry_iter(entry, spec: DatasetSpec, *, use_hf: bool, cache_dir, model_name, model_author,
                preprocessors, streaming: bool = False, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> Iterator[dict]:

    subsets = spec.subsets or entry.subsets or [None]  # several subsets: one after another
    if entry.path and spec.hub is None:
        path = resolve_entry_path(entry)
        sources = [iter_folder(path, s, entry.split, max_row_bytes) if path.is_dir()
                   else iter_file(path, max_row_bytes) for s in subsets]
    else:
        hub_id, hf = hub_source(entry, use_hf, spec.hub)
        load = iter_hub_rows if streaming else load_hub_rows
        sources = [load(hub_id, use_hf=hf, subset=s, split=entry.split, cache_dir=cache_dir,
                        max_row_bytes=max_row_bytes) for s in subsets]
    rows = (rename_columns(row, entry.columns) for row in itertools.chain.from_iterable(sources))
    if not entry.preprocessor:
        return rows
    fn = _preprocessor(entry, preprocessors)
    chunk = PREPROCESS_CHUNK if streaming else None  # a list preprocessor sees all rows at once
    return (row for part in _chunks(rows, chunk)
            for row in fn(part, model_name=model_name, model_author=model_author, source=entry.name))


def _chunks(rows: Iterator[dict], size: int | None) -> Iterator[list[dict]]:
    if size is None:
        yield list(rows)
        return
    while part := list(itertools.islice(rows, size)):
        yield part


def raw_iter(spec: DatasetSpec, *, registries, streaming: bool = False, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
             **kw) -> Iterator[dict]:
    """The raw rows (``_origin`` set, columns renamed) of one spec; the source is resolved now,
    rows are read as the iterator is consumed (hub rows too, with ``streaming``). ``registries``
    are the command's (:class:`swiftkit.core.plugins.Registries`): datasets and preprocessors.
    Files' lines over ``max_row_bytes`` come back as unreadable rows, not read whole."""
    source = spec.source
    if spec.hub is None:
        path = Path(source).expanduser()
        if path.is_dir():
            return itertools.chain.from_iterable(iter_folder(path, s, max_row_bytes=max_row_bytes)
                                                 for s in spec.subsets or [None])
        if path.exists() or path.suffix.lower() in SUPPORTED_SUFFIXES:
            if spec.subsets:
                raise DatasetError(f"--dataset {spec.text!r}: subsets apply to folders and hub datasets, not files")
            return iter_file(path, max_row_bytes)
    registry = registries.datasets
    if source in registry:
        return _entry_iter(registry.get(source), spec, streaming=streaming, preprocessors=registries.preprocessors,
                           max_row_bytes=max_row_bytes, **kw)
    if _HUB_ID.fullmatch(source):

        hf = spec.hub == "hf" if spec.hub else kw["use_hf"]
        load = iter_hub_rows if streaming else load_hub_rows
        return itertools.chain.from_iterable(
            load(source, use_hf=hf, subset=s, cache_dir=kw["cache_dir"], max_row_bytes=max_row_bytes)
            for s in spec.subsets or [None]
        )

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


def load_rows(specs: Sequence[str], *, registries, seed: int = 42, model_name: Sequence[str] = (),
              model_author: Sequence[str] = (), use_hf: bool = False, cache_dir: str | None = None,
              text_only: bool = False, require_reply: bool = True,
              columns: dict | None = None, skip_bad_rows: bool = False,
              report: LoadReport | None = None, sample: bool = True, allow_empty: bool = False,
              convert: Callable[[dict], dict | list[dict]] | None = None,
              max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> list[dict]:
    """Canonical rows of every spec, concatenated; mixed or sampled data is shuffled with ``seed``.

    Rows are ``{"messages": [...], "_origin": "path:line"}`` (see :mod:`swiftkit.data.convert`
    for the optional keys), or ``{"text": ..., "_origin": ...}`` with ``text_only``
    (pretraining). ``require_reply=False`` accepts prompts that end on a user turn (inference).
    ``registries`` are the command's registries (datasets and preprocessors, as plugins filled them).
    ``columns`` renames source columns for every spec (after a registered entry's own mapping).
    Bad rows raise :class:`BadRowsError` listing them, or with ``skip_bad_rows`` are left out and
    recorded in ``report``; any other bad input raises :class:`DatasetError` naming its place.
    ``sample=False`` ignores ``#N``/``#R`` (lint checks the data itself); ``allow_empty`` returns
    an empty list rather than failing when no row is usable. ``convert`` replaces the row
    conversion (e.g. :mod:`swiftkit.data.alignment`'s); it may return several rows per source row.
    A row over ``max_row_bytes`` (0: no limit) or nested too deeply (:mod:`swiftkit.data.limits`)
    is a bad row.
    """
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise DatasetError("no dataset given: pass --dataset FILE|NAME|ORG/NAME[#N]")
    if convert is None and text_only:
        convert = to_text_row
    elif convert is None:
        def convert(row):
            return to_messages_row(row, require_reply)
    report = report if report is not None else LoadReport()
    rows: list[dict] = []
    problems: list[RowError] = []
    shuffle = len(specs) > 1
    for text in specs:
        spec = parse_spec(text)
        raw = list(raw_iter(spec, registries=registries, use_hf=use_hf, cache_dir=cache_dir,
                            model_name=tuple(model_name), model_author=tuple(model_author),
                            max_row_bytes=max_row_bytes))
        if not raw:
            raise DatasetError(f"--dataset {text!r}: the data has no rows")
        report.rows_read += len(raw)
        canonical = []
        for row in raw:
            try:
                check_row_limits(row, max_row_bytes)
                out = convert(rename_columns(row, columns) if columns else row)
                canonical.extend(out if isinstance(out, list) else [out])
            except RowError as exc:
                problems.append(exc)
        if not canonical and not allow_empty:
            if problems and not skip_bad_rows:
                break
            raise DatasetError(f"--dataset {text!r}: none of its {len(raw)} rows is usable") from BadRowsError(
                problems, report.rows_read)
        size = spec.sample_size(len(canonical)) if sample and canonical else None
        if size is not None:
            canonical = sample_rows(canonical, size, seed)
            shuffle = True
        rows.extend(canonical)
    if problems and not skip_bad_rows:
        raise BadRowsError(problems, report.rows_read)
    report.skipped.extend(problems)
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


def row_content(row: dict) -> str:
    """A row's content as canonical JSON (``_origin`` left out): equal rows, equal text."""
    content = {k: v for k, v in row.items() if k != "_origin"}
    return json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def data_fingerprint(rows: list[dict]) -> str:
    """sha256 hex of the rows' content in order (``_origin`` ignored)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row_content(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()
