"""Read raw rows from local files (jsonl, json, csv, parquet, txt) and dataset folders.

``iter_file``/``iter_folder`` yield rows lazily (flat memory for jsonl, txt, csv and parquet, so
large corpora can be streamed); ``read_file``/``read_folder`` collect the same rows in a list.

Every row comes back as a dict with an ``_origin`` key, ``"path:line"`` (1-based; parquet rows
are ``"path:row N"``), so later errors can point at the exact place. The ``_origin`` of a row read
from a file is an :class:`Origin`: a string that also knows the file's folder (:func:`source_folder`),
against which paths the row gives relative to its file (images) are resolved. Nothing here
interprets the row's keys; :mod:`swiftkit.data.convert` does that.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import io
import itertools
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from swiftkit.data.errors import DatasetError
from swiftkit.data.limits import DEFAULT_MAX_ROW_BYTES, MAX_ROW_DEPTH, too_big

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
_SPLIT_WORDS = {"train", "test", "validation", "valid", "val", "dev", "eval"}
_NOT_DATA = {"dataset_info", "dataset_infos", "dataset_dict", "state", "readme", "config"}


class Origin(str):
    """A row's ``_origin`` (``"path:line"``), a plain string everywhere, that also holds the absolute
    folder of the file the row was read from (``folder``; None when unknown).

    The folder is a class attribute, one subclass per folder (:func:`_origin_type`), so a row's
    origin costs no more memory than a plain string subclass. Copies and pickles keep the folder."""

    __slots__ = ()
    folder: str | None = None

    def __reduce__(self):  # the per-folder subclass is rebuilt, not looked up by name
        return _origin, (str(self), self.folder)


@functools.lru_cache(maxsize=256)
def _origin_type(folder: str | None) -> type[Origin]:
    if folder is None:
        return Origin
    return type("Origin", (Origin,), {"__slots__": (), "folder": folder})


def _origin(text: str, folder: str | None) -> Origin:
    return _origin_type(folder)(text)


def _origins(path: Path) -> type[Origin]:
    """The :class:`Origin` type of the rows of ``path``: its folder, made absolute now. Only the folder
    is resolved (a data file that is a link, as in a hub snapshot, keeps the folder it is linked from)."""
    return _origin_type(os.path.realpath(path.parent))


def source_folder(row: dict) -> str | None:
    """The absolute folder of the file ``row`` was read from, or None (a hub row, a row built in code)."""
    return getattr(row.get("_origin"), "folder", None)


def iter_file(path: str | Path, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> Iterator[dict]:
    """The rows of one file, by its extension, read lazily (a missing file or other extension is an
    error at once). jsonl, txt, csv and parquet stream with flat memory; a ``.json`` list is parsed
    whole (one JSON document cannot be read piecewise with the standard library).

    A row over ``max_row_bytes`` (0: no limit) comes back as an unreadable row naming its size; a
    JSON or text line over it is skipped without being read whole. Parquet rows are measured by
    the loader once read (:mod:`swiftkit.data.limits`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    if suffix not in SUPPORTED_SUFFIXES:
        raise DatasetError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if suffix == ".parquet":
        return _iter_parquet(path)
    reader = {".jsonl": _iter_jsonl, ".json": _iter_json, ".csv": _iter_csv, ".txt": _iter_txt}[suffix]
    return reader(path, max_row_bytes)


def read_file(path: str | Path, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> list[dict]:
    """All rows of one file (:func:`iter_file`, collected)."""
    return list(iter_file(path, max_row_bytes))


class Oversized(int):
    """What :func:`_lines` yields in place of a line over the limit: the line's size in bytes."""


_SKIP_CHUNK = 1 << 20  # bytes read at a time while skipping the rest of an oversized line


def _raw_lines(file, limit: int) -> Iterator[bytes | Oversized]:
    """The lines of a binary file; with ``limit`` > 0 a line longer than ``limit`` bytes (its line
    end not counted) is read in bounded pieces and yielded as its :class:`Oversized` size."""
    if not limit:
        yield from file
        return
    while raw := file.readline(limit + 1):
        if raw.endswith(b"\n") or len(raw) <= limit:
            yield raw
            continue
        size = len(raw)
        while raw and not raw.endswith(b"\n"):
            raw = file.readline(_SKIP_CHUNK)
            size += len(raw)
        yield Oversized(size - (1 if raw.endswith(b"\n") else 0))


def _lines(path: Path, keepends: bool = False, limit: int = 0) -> Iterator[tuple[int, str | Oversized]]:
    """``(line number, text)`` of a UTF-8 file, one line at a time; a byte-order mark is dropped.

    Lines end at ``\\n`` only (as JSON lines and CSV define them); each is decoded on its own, so
    bytes that are not UTF-8 are reported with their exact line. A line over ``limit`` bytes
    (0: no limit) comes as its :class:`Oversized` size instead of its text.
    """
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed by the with below (also when the reader is abandoned)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    with file:
        for n, raw in enumerate(_raw_lines(file, limit), 1):
            if isinstance(raw, Oversized):
                yield n, raw
                continue
            if n == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            if not keepends:
                raw = raw.rstrip(b"\r\n")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path}:{n}: not valid UTF-8 ({exc.reason})") from exc
            raw = None  # one copy of a long line at a time
            yield n, line


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not valid UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc


def unreadable(origin: str, problem: str, kind: str | None = None) -> dict:
    """A row that could not be read: it stands in its place so the converter reports it (with
    every other bad row) as a row error of ``kind`` (by default ``invalid_json`` or ``unreadable``),
    and ``--skip_bad_rows`` can leave it out."""
    row = {UNREADABLE: problem, "_origin": origin}
    if kind is not None:
        row[UNREADABLE_KIND] = kind
    return row


UNREADABLE = "_unreadable"
UNREADABLE_KIND = "_unreadable_kind"
TOO_DEEP_TO_PARSE = (f"nested too deeply for the JSON parser (rows may nest at most {MAX_ROW_DEPTH} levels of "
                     "lists/objects)")


def _object(value, path: Path, line, origin: type[Origin]) -> dict:
    if not isinstance(value, dict):
        return unreadable(f"{path}:{line}", f"expected a JSON object per row, got {type(value).__name__}")
    value["_origin"] = origin(f"{path}:{line}")
    return value


def _invalid(path: Path, line: int, exc: json.JSONDecodeError) -> DatasetError:
    return DatasetError(f"{path}:{line}: invalid JSON: {exc.msg} (column {exc.colno})")


def _json_lines(path: Path, lines: Iterable[tuple[int, str | Oversized]], limit: int) -> Iterator[dict]:
    origin = _origins(path)
    for n, line in lines:
        if isinstance(line, Oversized):
            yield unreadable(f"{path}:{n}", too_big(line, limit), "row_too_big")
            continue
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            line = None  # the parsed row replaces the text
        except json.JSONDecodeError as exc:
            yield unreadable(f"{path}:{n}", f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:  # the standard parser recurses once per nesting level
            yield unreadable(f"{path}:{n}", TOO_DEEP_TO_PARSE, "too_deep")
            continue
        yield _object(value, path, n, origin)


def _iter_jsonl(path: Path, limit: int) -> Iterator[dict]:
    return _json_lines(path, _lines(path, limit=limit), limit)


_WS = re.compile(r"\s*")
# A JSON string, or one bracket: enough to find where a value too deep to parse ends.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _value_end(text: str, pos: int) -> int | None:
    """Where the list/object starting at ``text[pos]`` ends (iteratively), or None when it does not."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text, pos):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
            if depth <= 0:
                return match.end() if depth == 0 else None
    return None


def _text_size(text: str, limit: int) -> int:
    """UTF-8 bytes of ``text`` when that can exceed ``limit`` (else a cheap lower figure)."""
    if not limit or len(text) * 4 <= limit or text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _sized(lines: Iterable[tuple[int, str]], limit: int) -> Iterator[tuple[int, str | Oversized]]:
    for n, line in lines:
        size = _text_size(line, limit)
        yield n, (Oversized(size) if limit and size > limit else line)


def _iter_json(path: Path, limit: int) -> Iterator[dict]:
    """A JSON list of objects; each row's line is where its object starts. JSON lines also work."""
    text = _text(path)
    pos = _WS.match(text).end()
    if not text.startswith("[", pos):
        try:
            whole = json.loads(text)
        except (json.JSONDecodeError, RecursionError):  # JSON lines, or too deep: row by row
            yield from _json_lines(path, _sized(enumerate(text.split("\n"), 1), limit), limit)
            return
        if isinstance(whole, dict):
            raise DatasetError(
                f"{path}:1: expected a list of objects (or one object per line), got one object "
                f"with keys {sorted(whole)}"
            )
        raise DatasetError(f"{path}:1: expected a list of objects, got {type(whole).__name__}")
    decoder = json.JSONDecoder()
    origin = _origins(path)
    line, counted = 1, 0  # line number of text[counted]; counted forward only (linear time)

    def line_at(at: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, at)
        counted = at
        return line

    pos, first = pos + 1, True
    while True:
        pos = _WS.match(text, pos).end()
        if first and text.startswith("]", pos):
            break
        first = False
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise _invalid(path, exc.lineno, exc) from exc
        except RecursionError as exc:  # the standard parser recurses once per nesting level
            end = _value_end(text, pos)
            if end is None:
                raise DatasetError(f"{path}:{line_at(pos)}: a row is {TOO_DEEP_TO_PARSE}") from exc
            yield unreadable(f"{path}:{line_at(pos)}", TOO_DEEP_TO_PARSE, "too_deep")
        else:
            size = _text_size(text[pos:end], limit) if limit and end - pos > limit // 4 else end - pos
            if limit and size > limit:
                yield unreadable(f"{path}:{line_at(pos)}", too_big(size, limit), "row_too_big")
            else:
                yield _object(value, path, line_at(pos), origin)
            del value
        pos = _WS.match(text, end).end()
        if text.startswith(",", pos):
            pos += 1
        elif text.startswith("]", pos):
            break
        else:
            raise DatasetError(f"{path}:{line_at(pos)}: invalid JSON: expected ',' or ']' after a list item")
    tail = _WS.match(text, pos + 1).end()
    if tail < len(text):
        raise DatasetError(f"{path}:{line_at(tail)}: invalid JSON: extra data after the list")


@contextlib.contextmanager
def _csv_field_limit(limit: int):
    """The csv module's field size limit (a process-wide setting, 128 KiB by default) raised to the
    row limit for one read, and put back."""
    saved = csv.field_size_limit()
    csv.field_size_limit(max(saved, limit) if limit else sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(saved)


def _iter_csv(path: Path, limit: int) -> Iterator[dict]:
    def physical(lines):
        for n, line in lines:
            if isinstance(line, Oversized):
                raise DatasetError(f"{path}:{n}: line is {line:,} bytes, over --max_row_bytes {limit:,}; raise "
                                   "--max_row_bytes (0 turns the limit off)")
            yield line

    lines = physical(_lines(path, keepends=True, limit=limit))
    first = next(lines, None)
    if first is not None and "\r" in first.rstrip("\r\n"):
        source = io.StringIO(_text(path), newline="")  # old Mac line ends (CR only): read it whole
    else:
        source = itertools.chain([] if first is None else [first], lines)
    reader = csv.DictReader(source)
    origin = _origins(path)
    with _csv_field_limit(limit):
        fieldnames = reader.fieldnames
    if fieldnames is None:
        raise DatasetError(f"{path}: empty CSV file (a header row is needed)")
    while True:
        start = reader.line_num + 1
        try:
            with _csv_field_limit(limit):
                row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if limit and "field larger than field limit" in str(exc):
                raise DatasetError(f"{path}:{start}: a cell of this record is over --max_row_bytes {limit:,} bytes; "
                                   "raise --max_row_bytes (0 turns the limit off)") from exc
            raise DatasetError(f"{path}:{reader.line_num}: invalid CSV: {exc}") from exc
        if None in row:
            yield unreadable(f"{path}:{start}", f"{len(fieldnames) + len(row[None])} fields but "
                             f"the header has {len(fieldnames)}")
            continue
        # Empty cells mean "absent" (CSV cannot say null).
        row = {k: v for k, v in row.items() if v not in ("", None)}
        size = sum(_text_size(v, limit) for v in row.values())
        if limit and size > limit:
            yield unreadable(f"{path}:{start}", too_big(size, limit), "row_too_big")
            continue
        row["_origin"] = origin(f"{path}:{start}")
        yield row


PARQUET_BATCH_ROWS = 1024


def _iter_parquet(path: Path) -> Iterator[dict]:
    """Record batches of :data:`PARQUET_BATCH_ROWS` rows, one after another."""
    import pyarrow.parquet as pq  # defers pyarrow

    n, origin = 0, _origins(path)
    try:  # pyarrow raises ArrowInvalid / OSError for a broken file, at open or at a later batch
        batches = pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS)
        batch = next(batches, None)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read parquet: {exc}") from exc
    while batch is not None:
        for row in batch.to_pylist():
            n += 1
            row["_origin"] = origin(f"{path}:row {n}")
            yield row
        try:
            batch = next(batches, None)
        except Exception as exc:
            raise DatasetError(f"{path}: cannot read parquet after row {n}: {exc}") from exc


def _iter_txt(path: Path, limit: int) -> Iterator[dict]:
    """Raw text: one row per non-empty line."""
    origin = _origins(path)
    for n, line in _lines(path, limit=limit):
        if isinstance(line, Oversized):
            yield unreadable(f"{path}:{n}", too_big(line, limit), "row_too_big")
        elif line.strip():
            yield {"text": line, "_origin": origin(f"{path}:{n}")}


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


def iter_folder(folder: str | Path, subset: str | None = None, split: str = "train",
                max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> Iterator[dict]:
    """Rows of every data file :func:`data_files` selects, in file-name order, read lazily (the file
    selection, and its errors, happen at once)."""
    files = data_files(folder, subset, split)
    return (row for f in files for row in iter_file(f, max_row_bytes))


def read_folder(folder: str | Path, subset: str | None = None, split: str = "train",
                max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> list[dict]:
    """All rows of :func:`iter_folder`, collected."""
    return list(iter_folder(folder, subset, split, max_row_bytes))
