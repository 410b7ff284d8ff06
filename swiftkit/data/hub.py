"""Download dataset rows from ModelScope (default) or the Hugging Face hub (``use_hf``).

ModelScope: the dataset repository's data files are fetched with ``dataset_snapshot_download``
and read by :mod:`swiftkit.data.readers` (``MsDataset`` needs ``datasets<=4.8``, which the core
stack does not pin). Hugging Face: ``datasets.load_dataset``.

Both libraries retry an unreachable host for ~25 s, so the hub's host (or the configured HTTPS
proxy) is probed first with a short connect timeout (:mod:`swiftkit.hub`); an unreachable hub is
a :class:`DatasetError` within seconds that names the id, the hub and the local-file alternative.
"""

from __future__ import annotations

from swiftkit.data.errors import DatasetError
from swiftkit.hub import PROBE_TIMEOUT_S, unreachable_reason

HUB_FILE_PATTERNS = ["*.jsonl", "*.json", "*.csv", "*.parquet"]


def _hint(dataset_id: str) -> str:
    return (
        f"download {dataset_id!r} where the hub is reachable and pass the local file or folder "
        "(jsonl/json/csv/parquet) in --dataset instead"
    )


def check_reachable(hub: str, endpoint: str, dataset_id: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`DatasetError` when ``endpoint`` (or the HTTPS proxy in use) does not answer."""
    reason = unreachable_reason([endpoint], timeout)
    if reason is not None:
        raise DatasetError(
            f"dataset {dataset_id!r}: cannot reach {hub} ({endpoint}): {reason}; " + _hint(dataset_id)
        )


def _load_hf(dataset_id: str, subset: str | None, split: str, cache_dir: str | None) -> list[dict]:
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:  # offline mode reads the local cache only: nothing to probe
        check_reachable("the Hugging Face hub", constants.ENDPOINT, dataset_id)
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, subset, split=split, cache_dir=cache_dir)
    except Exception as exc:  # the library raises many types (ConnectionError, DatasetNotFoundError, ...)
        part = f"subset {subset!r}, split {split!r}" if subset else f"split {split!r}"
        raise DatasetError(
            f"dataset {dataset_id!r} (Hugging Face hub, {part}) could not be loaded: "
            f"{type(exc).__name__}: {exc}; " + _hint(dataset_id)
        ) from exc
    rows = ds.to_list()
    for i, row in enumerate(rows, 1):
        row["_origin"] = f"hf:{dataset_id}[{split}]:row {i}"
    return rows


def _load_ms(dataset_id: str, subset: str | None, split: str, cache_dir: str | None) -> list[dict]:
    from modelscope.hub.utils.utils import get_endpoint

    check_reachable("ModelScope", get_endpoint(), dataset_id)
    from modelscope.hub.snapshot_download import dataset_snapshot_download

    from swiftkit.data.readers import read_folder

    try:
        folder = dataset_snapshot_download(dataset_id, cache_dir=cache_dir, allow_patterns=HUB_FILE_PATTERNS)
    except Exception as exc:  # modelscope raises HubError subclasses, HTTP and OS errors
        raise DatasetError(
            f"dataset {dataset_id!r} (ModelScope) could not be downloaded: {type(exc).__name__}: {exc}; "
            + _hint(dataset_id)
        ) from exc
    return read_folder(folder, subset, split)


def load_hub_rows(dataset_id: str, *, use_hf: bool = False, subset: str | None = None, split: str = "train",
                  cache_dir: str | None = None) -> list[dict]:
    """Raw rows (with ``_origin``) of a hub dataset; any failure is a :class:`DatasetError`."""
    loader = _load_hf if use_hf else _load_ms
    return loader(dataset_id, subset, split, cache_dir)
