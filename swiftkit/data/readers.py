"""Read raw rows from local files (jsonl, json, csv, parquet, txt) and dataset folders.

Every row comes back as a dict with an ``_origin`` key, ``"path:line"`` (1-based; parquet rows
are ``"path:row N"``), so later errors can point at the exact place. Nothing here interprets the
row's keys; :mod:`swiftkit.data.convert` does that.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from swiftkit.data.errors import DatasetError

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
_SPLIT_WORDS = {"train", "test", "validation", "valid", "val", "dev", "eval"}
_NOT_DATA = {"dataset_info", "dataset_infos", "dataset_dict", "state", "readme", "config"}


def read_file(path: str | Path) -> list[dict]:
    """All rows of one file, by its extension; a missing file or other extension is an error."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    if suffix not in SUPPORTED_SUFFIXES:
        raise DatasetError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    reader = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
              ".parquet": _read_parquet, ".txt": _read_txt}[suffix]
    return reader(path)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not valid UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc


def _object(value, path: Path, line) -> dict:
    if not isinstance(value, dict):
        raise DatasetError(f"{path}:{line}: expected a JSON object per row, got {type(value).__name__}")
    value["_origin"] = f"{path}:{line}"
    return value


def _invalid(path: Path, line: int, exc: json.JSONDecodeError) -> DatasetError:
    return DatasetError(f"{path}:{line}: invalid JSON: {exc.msg} (column {exc.colno})")


def _read_jsonl(path: Path, text: str | None = None) -> list[dict]:
    rows = []
    for n, line in enumerate((_text(path) if text is None else text).splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _invalid(path, n, exc) from exc
        rows.append(_object(value, path, n))
    return rows


_WS = re.compile(r"\s*")


def _read_json(path: Path) -> list[dict]:
    """A JSON list of objects; each row's line is where its object starts. JSON lines also work."""
    text = _text(path)
    pos = _WS.match(text).end()
    if not text.startswith("[", pos):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            return _read_jsonl(path, text)  # a .json file holding JSON lines
        if isinstance(whole, dict):
            raise DatasetError(
                f"{path}:1: expected a list of objects (or one object per line), got one object "
                f"with keys {sorted(whole)}"
            )
        raise DatasetError(f"{path}:1: expected a list of objects, got {type(whole).__name__}")
    decoder = json.JSONDecoder()
    rows, pos = [], pos + 1
    while True:
        pos = _WS.match(text, pos).end()
        if text.startswith("]", pos) and not rows:
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise _invalid(path, exc.lineno, exc) from exc
        rows.append(_object(value, path, text.count("\n", 0, pos) + 1))
        pos = _WS.match(text, end).end()
        if text.startswith(",", pos):
            pos += 1
        elif text.startswith("]", pos):
            break
        else:
            line = text.count("\n", 0, pos) + 1
            raise DatasetError(f"{path}:{line}: invalid JSON: expected ',' or ']' after a list item")
    tail = _WS.match(text, pos + 1).end()
    if tail < len(text):
        raise DatasetError(f"{path}:{text.count(chr(10), 0, tail) + 1}: invalid JSON: extra data after the list")
    return rows


def _read_csv(path: Path) -> list[dict]:
    import csv
    import io

    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    if reader.fieldnames is None:
        raise DatasetError(f"{path}: empty CSV file (a header row is needed)")
    rows = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetError(f"{path}:{reader.line_num}: invalid CSV: {exc}") from exc
        if None in row:
            raise DatasetError(
                f"{path}:{start}: {len(reader.fieldnames) + len(row[None])} fields but the header "
                f"has {len(reader.fieldnames)}"
            )
        # Empty cells mean "absent" (CSV cannot say null).
        row = {k: v for k, v in row.items() if v not in ("", None)}
        row["_origin"] = f"{path}:{start}"
        rows.append(row)
    return rows


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a broken file
        raise DatasetError(f"{path}: cannot read parquet: {exc}") from exc
    rows = table.to_pylist()
    for i, row in enumerate(rows, 1):
        row["_origin"] = f"{path}:row {i}"
    return rows


def _read_txt(path: Path) -> list[dict]:
    """Raw text: one row per non-empty line."""
    return [
        {"text": line, "_origin": f"{path}:{n}"}
        for n, line in enumerate(_text(path).splitlines(), 1)
        if line.strip()
    ]


def _tokens(rel: Path) -> set[str]:
    words = set(rel.parts[:-1])
    words.update(re.split(r"[-_.]", rel.stem.lower()))
    return words


def data_files(folder: str | Path, subset: str | None = None, split: str = "train") -> list[Path]:
    """The data files of a dataset folder (a local copy or a hub download) for ``subset``/``split``.

    Files whose path names a split word are kept only for their split; a folder without split
    names is all "train". A subset is a sub-folder or a file-name prefix.
    """
    folder = Path(folder)
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
        and p.stem.lower() not in _NOT_DATA
    )
    if not files:
        raise DatasetError(f"{folder}: no data files ({', '.join(SUPPORTED_SUFFIXES)}) in this folder")
    rel = {f: f.relative_to(folder) for f in files}
    if subset:
        chosen = [
            f for f in files
            if subset in rel[f].parts[:-1] or f.stem == subset or f.stem.startswith((subset + "-", subset + "_"))
        ]
        if not chosen:
            raise DatasetError(f"{folder}: no files for subset {subset!r}; files: {[str(rel[f]) for f in files]}")
        files = chosen
    in_split = [f for f in files if split.lower() in _tokens(rel[f])]
    if in_split:
        return in_split
    if split == "train" and not any(_tokens(rel[f]) & _SPLIT_WORDS for f in files):
        return files
    raise DatasetError(f"{folder}: no files for split {split!r}; files: {[str(rel[f]) for f in files]}")


def read_folder(folder: str | Path, subset: str | None = None, split: str = "train") -> list[dict]:
    """Rows of every data file :func:`data_files` selects, in file-name order."""
    return [row for f in data_files(folder, subset, split) for row in read_file(f)]
