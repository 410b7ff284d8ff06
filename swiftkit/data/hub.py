"""Rows of hub datasets, from ModelScope (default) or the Hugging Face hub (``use_hf``), whole or streamed.

Online, ModelScope data files are fetched with ``dataset_snapshot_download`` and read by
:mod:`swiftkit.data.readers` (``MsDataset`` needs ``datasets<=4.8``, which the core stack does not
pin); Hugging Face datasets go through ``datasets.load_dataset`` (``streaming=True`` for
:func:`iter_hub_rows`).

A dataset that is cached loads without network. Both libraries retry an unreachable host for
~25 s and then fail even when a copy is cached (datasets 5.2 in offline mode does not read the hub
snapshot at all), so the hub's host (or the HTTPS proxy in use) is probed first with a short
connect timeout (:mod:`swiftkit.core.netprobe`). When the probe fails, when HF_HUB_OFFLINE is set, or when
the online load itself fails, the local cache is read instead and a note on stderr says so:

- Hugging Face: the snapshot that ``datasets``/``huggingface_hub`` download into
  (``<hub cache>/datasets--org--name/snapshots/<sha>/`` via ``refs/main``; the hub cache is
  ``cache_dir`` or huggingface_hub's ``HF_HUB_CACHE``), loaded with ``load_dataset`` on that
  folder so the README's configs (subsets) and split naming apply as they do online; otherwise
  the datasets library's own Arrow cache (``<cache_dir or HF_DATASETS_CACHE>/org___name/``),
  through ``load_dataset`` in its offline mode.
- ModelScope: the snapshot ``dataset_snapshot_download`` wrote (``<cache>/datasets/org--name/
  snapshots/<revision>/``, or the older ``<cache>/datasets/org/name/``), found by the library
  with ``local_files_only``.

Nothing cached: a :class:`DatasetError` within seconds that names the id, the hub, why it was not
used, where the cache was looked for, and the local-file alternative.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from swiftkit.core.netprobe import PROBE_TIMEOUT_S, modelscope_endpoints, unreachable_reason
from swiftkit.data.errors import DatasetError
from swiftkit.data.limits import DEFAULT_MAX_ROW_BYTES
from swiftkit.data.readers import iter_folder, read_folder

HUB_FILE_PATTERNS = ["*.jsonl", "*.json", "*.csv", "*.parquet"]
HF_HUB = "Hugging Face hub"


def load_hub_rows(dataset_id: str, *, use_hf: bool = False, subset: str | None = None, split: str = "train",
                  cache_dir: str | None = None, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> list[dict]:
    """Raw rows (with ``_origin``) of a hub dataset, from the local cache when the hub cannot be used
    (module docstring); any failure is a :class:`DatasetError`. ``max_row_bytes`` bounds the lines
    of downloaded files (:func:`swiftkit.data.readers.iter_file`); the loader measures every row."""
    if use_hf:
        ds = _hf_dataset(dataset_id, subset, split, cache_dir, streaming=False)
        rows = ds.to_list()
        for i, row in enumerate(rows, 1):
            row["_origin"] = _hf_origin(dataset_id, split, i)
        return rows

    return read_folder(_ms_folder(dataset_id, cache_dir), subset, split, max_row_bytes)


def iter_hub_rows(dataset_id: str, *, use_hf: bool = False, subset: str | None = None, split: str = "train",
                  cache_dir: str | None = None, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> Iterator[dict]:
    """The rows of :func:`load_hub_rows`, one at a time.

    Finding the data (probe, cache, download) happens at once, so its errors do too. Hugging Face
    online streams over HTTP (``load_dataset(..., streaming=True)``); from the cache it reads the
    local files lazily. ModelScope has no streaming download here: the data files are downloaded
    (or found in the cache) first, then read lazily.
    """
    if use_hf:
        return _hf_stream(dataset_id, split, _hf_dataset(dataset_id, subset, split, cache_dir, streaming=True))

    return iter_folder(_ms_folder(dataset_id, cache_dir), subset, split, max_row_bytes)


# --- shared --------------------------------------------------------------------------------------

def _hint(dataset_id: str) -> str:
    return (
        f"download {dataset_id!r} where the hub is reachable and pass the local file or folder "
        "(jsonl/json/csv/parquet) in --dataset instead"
    )


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no details'}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _note(message: str) -> None:
    print(f"[swiftkit] {message}", file=sys.stderr)


# --- Hugging Face --------------------------------------------------------------------------------

def _hf_origin(dataset_id: str, split: str, n: int) -> str:
    return f"hf:{dataset_id}[{split}]:row {n}"


def _hf_where(subset: str | None, split: str) -> str:
    return f"{HF_HUB}, subset {subset!r}, split {split!r}" if subset else f"{HF_HUB}, split {split!r}"


def _hf_offline_reason() -> str | None:
    """None when the hub is to be used online; otherwise why not, in one line."""
    import datasets.config  # defers datasets
    from huggingface_hub import constants  # defers huggingface_hub

    if constants.is_offline_mode() or datasets.config.HF_HUB_OFFLINE:
        return "offline mode is set (HF_HUB_OFFLINE)"
    reason = unreachable_reason([constants.ENDPOINT], PROBE_TIMEOUT_S)
    return None if reason is None else f"cannot reach the {HF_HUB} ({constants.ENDPOINT}): {reason}"


@contextlib.contextmanager
def _hf_offline_mode():
    """Run huggingface_hub and datasets in their own offline mode for the block (cache only).

    Both read HF_HUB_OFFLINE from the environment once, at import, into module constants that their
    code consults at call time; setting those constants is how the mode changes after import.
    """
    import datasets.config  # defers datasets
    from huggingface_hub import constants  # defers huggingface_hub

    saved = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def _hf_hub_caches(cache_dir: str | None) -> list[str]:
    from huggingface_hub import constants  # defers huggingface_hub

    return list(dict.fromkeys(str(Path(c).expanduser()) for c in (cache_dir, constants.HF_HUB_CACHE) if c))


def hf_cached_snapshot(dataset_id: str, cache_dir: str | None = None) -> Path | None:
    """The snapshot folder of ``dataset_id`` (``refs/main``) in a local hub cache, or None."""
    from huggingface_hub import snapshot_download  # defers huggingface_hub

    for root in _hf_hub_caches(cache_dir):
        try:
            return Path(snapshot_download(dataset_id, repo_type="dataset", cache_dir=root, local_files_only=True))
        except Exception:  # LocalEntryNotFoundError (or a broken cache entry): not cached there
            continue
    return None


def hf_arrow_cache(dataset_id: str, cache_dir: str | None = None) -> Path | None:
    """The datasets library's own cache folder of ``dataset_id`` (prepared Arrow files), or None."""
    import datasets.config  # defers datasets
    from datasets.naming import camelcase_to_snakecase  # defers datasets

    *namespace, name = dataset_id.split("/")
    root = Path(cache_dir or datasets.config.HF_DATASETS_CACHE).expanduser()
    folder = root / "___".join([*namespace, camelcase_to_snakecase(name)])
    return folder if folder.is_dir() else None


def _hf_dataset(dataset_id: str, subset: str | None, split: str, cache_dir: str | None, streaming: bool):
    """A datasets ``Dataset`` (``IterableDataset`` when streaming), online or from the cache."""
    import datasets  # defers datasets

    reason = _hf_offline_reason()
    online_error = None
    if reason is None:
        try:
            return datasets.load_dataset(dataset_id, subset, split=split, cache_dir=cache_dir, streaming=streaming)
        except Exception as exc:  # the library raises many types (ConnectionError, DatasetNotFoundError, ...)
            online_error, reason = exc, f"loading it failed ({_one_line(exc)})"
    found = _hf_from_cache(dataset_id, subset, split, cache_dir, streaming, reason)
    if found is not None:
        return found
    if online_error is not None:
        raise DatasetError(
            f"dataset {dataset_id!r} ({_hf_where(subset, split)}) could not be loaded: "
            f"{_one_line(online_error, 600)}; " + _hint(dataset_id)
        ) from online_error
    import datasets.config  # defers datasets

    looked = [f"{c} (hub cache)" for c in _hf_hub_caches(cache_dir)]
    looked.append(f"{Path(cache_dir or datasets.config.HF_DATASETS_CACHE).expanduser()} (datasets cache)")
    raise DatasetError(
        f"dataset {dataset_id!r} ({_hf_where(subset, split)}): {reason}, and no copy is cached "
        f"(looked in {', '.join(looked)}); " + _hint(dataset_id)
    )


def _hf_from_cache(dataset_id, subset, split, cache_dir, streaming, reason):
    """The dataset read from a local cache without network, or None when nothing is cached."""
    import datasets  # defers datasets

    tried = []
    for source, folder in (("snapshot", hf_cached_snapshot(dataset_id, cache_dir)),
                           ("arrow", hf_arrow_cache(dataset_id, cache_dir))):
        if folder is None:
            continue
        path = str(folder) if source == "snapshot" else dataset_id  # the Arrow cache is found by id
        try:
            with _hf_offline_mode():
                ds = datasets.load_dataset(path, subset, split=split, cache_dir=cache_dir, streaming=streaming)
        except Exception as exc:  # a partial snapshot, an unknown subset or split, a broken file, ...
            tried.append(f"{folder}: {_one_line(exc)}")
            continue
        _note(f"dataset {dataset_id!r}: {reason}; using the cached copy in {folder}")
        return ds
    if tried:
        raise DatasetError(
            f"dataset {dataset_id!r} ({_hf_where(subset, split)}): {reason}, and the cached copy "
            f"could not be read: {'; '.join(tried)}"
        )
    return None


def _hf_stream(dataset_id: str, split: str, ds) -> Iterator[dict]:
    rows = iter(ds)
    n = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # a network or file error in the middle of the stream
            raise DatasetError(
                f"dataset {dataset_id!r} ({HF_HUB}, split {split!r}): reading row {n + 1} failed: "
                f"{_one_line(exc)}"
            ) from exc
        n += 1
        row["_origin"] = _hf_origin(dataset_id, split, n)
        yield row


# --- ModelScope ----------------------------------------------------------------------------------

def ms_cached_snapshot(dataset_id: str, cache_dir: str | None = None) -> Path | None:
    """The folder of ``dataset_id`` that an earlier ``dataset_snapshot_download`` left, or None."""
    from modelscope.hub.snapshot_download import snapshot_download  # defers modelscope

    try:
        return Path(snapshot_download(repo_id=dataset_id, repo_type="dataset", cache_dir=cache_dir,
                                      local_files_only=True))
    except Exception:  # CacheNotFound (or an ambiguous cache): not cached
        return None


def _ms_cache_root(cache_dir: str | None) -> str:
    if cache_dir:
        return str(Path(cache_dir).expanduser())
    try:
        from modelscope_hub.config import get_default_config  # defers modelscope_hub

        return str(get_default_config().cache_dir)
    except ImportError:  # modelscope releases before the modelscope_hub split
        return "the ModelScope cache"


def _ms_folder(dataset_id: str, cache_dir: str | None) -> Path:
    """The local folder of the dataset's data files: downloaded now, or cached earlier."""
    endpoints = modelscope_endpoints()
    reason = unreachable_reason(endpoints, PROBE_TIMEOUT_S)
    online_error = None
    if reason is None:
        from modelscope.hub.snapshot_download import dataset_snapshot_download  # defers modelscope

        try:
            return Path(dataset_snapshot_download(dataset_id, cache_dir=cache_dir, allow_patterns=HUB_FILE_PATTERNS))
        except Exception as exc:  # modelscope raises HubError subclasses, HTTP and OS errors
            online_error, reason = exc, f"the download failed ({_one_line(exc)})"
    else:
        reason = f"cannot reach ModelScope ({', '.join(endpoints)}): {reason}"
    cached = ms_cached_snapshot(dataset_id, cache_dir)
    if cached is not None:
        _note(f"dataset {dataset_id!r}: {reason}; using the cached copy in {cached}")
        return cached
    if online_error is not None:
        raise DatasetError(
            f"dataset {dataset_id!r} (ModelScope) could not be downloaded: {_one_line(online_error, 600)}; "
            + _hint(dataset_id)
        ) from online_error
    raise DatasetError(
        f"dataset {dataset_id!r} (ModelScope): {reason}, and no copy is cached in "
        f"{_ms_cache_root(cache_dir)}; " + _hint(dataset_id)
    )
