"""Rows -> token ids + labels with the template, and the collator that batches them.

``encode_dataset`` is the recipe's entry point: it encodes in one or several processes (order kept,
results identical), reuses the on-disk cache of :mod:`swiftkit.data.cache` when the same rows were
encoded before with the same template, tokenizer and options, or returns a lazily encoding dataset.
``encode_rows`` is the plain one-process form returning a list of dicts. The datasets that encode while training
(``--lazy_tokenize``, ``--streaming``) are in :mod:`swiftkit.data.datasets`.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from pathlib import Path

from swiftkit.data.cache import (
    EncodedDataset,
    cache_key,
    default_cache_dir,
    load_entry,
    save_entry,
)
from swiftkit.data.errors import DatasetError
from swiftkit.data.length import check_length
from swiftkit.templates import SequenceTooLong

_CHUNK_ROWS = 1024  # rows per task handed to a worker process
_BATCH_ROWS = 256  # rows whose conversations are tokenized in one call
_WORKER_TEMPLATE = None  # set in each worker process by _init_worker


def all_too_long(what: str, n: int, template) -> DatasetError:
    """The error when no row of ``what`` fits --max_length."""
    return DatasetError(
        f"every row of {what} ({n}) is longer than --max_length {template.max_length}; "
        "raise --max_length or use --truncation_strategy left/right"
    )


def encode_each(rows, template):
    """``{"input_ids", "labels"}`` for each row, or None for a row over --max_length (strategy
    delete): the one loop every encoder here shares. Rows go to the template ``_BATCH_ROWS`` at a
    time, so their conversations are tokenized in one call (:meth:`Template.encode_many`)."""
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == _BATCH_ROWS:
            yield from _encode_batch(batch, template)
            batch = []
    if batch:
        yield from _encode_batch(batch, template)


def _encode_batch(rows: list, template) -> list[dict | None]:
    fits, failure = [], None
    for row in rows:
        try:
            check_length(template, row)  # a row far over --max_length is not tokenized at all
        except SequenceTooLong:
            fits.append(None)
            continue
        except Exception as exc:  # noqa: BLE001 - raised below, once the rows before it are encoded
            failure = exc
            break
        fits.append(row)
    encoded = iter(template.encode_many([row for row in fits if row is not None]))
    out = [None if row is None else next(encoded) for row in fits]
    if failure is not None:
        raise failure
    return out


def encode_rows(rows: list[dict], template, what: str = "--dataset") -> tuple[list[dict], int]:
    """Encode every row; rows over --max_length (strategy delete) are skipped and counted."""
    encoded, skipped = [], 0
    for enc in encode_each(rows, template):
        if enc is None:
            skipped += 1
            continue
        encoded.append(enc)
    if rows and not encoded:
        raise all_too_long(what, len(rows), template)
    return encoded, skipped


def encode_dataset(rows: list[dict], template, *, what: str = "--dataset", num_proc: int = 1,
                   cache_dir: str | Path | None = None, use_cache: bool = True) -> tuple[EncodedDataset, int]:
    """Encoded ``rows`` for ``transformers.Trainer`` and the number of rows skipped as too long.

    ``num_proc`` > 1 encodes chunks of rows in a process pool. The result is cached under
    ``cache_dir`` (default ``~/.cache/swiftkit/encoded``) unless ``use_cache`` is False; a hit loads
    the arrays without tokenizing. (``--lazy_tokenize`` encodes nothing up front: see
    :class:`swiftkit.data.datasets.LazyEncodedDataset`.)
    """
    if isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1:
        raise DatasetError(f"--dataset_num_proc must be a positive integer, got {num_proc!r}")
    if not rows:
        return EncodedDataset.from_chunks([], [], []), 0
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(rows, template) if use_cache else None
    if key is not None:
        hit = load_entry(root, key, vocab_size=len(template.tokenizer))
        if hit is not None:
            return hit
    data, skipped = _encode_arrays(rows, template, num_proc)
    if not len(data):
        raise all_too_long(what, len(rows), template)
    if key is not None:
        try:
            data.cache_path = save_entry(root, key, data, skipped)
        except OSError as exc:
            print(f"[swiftkit] could not write the encoded-data cache in {root}: {exc}", file=sys.stderr)
    return data, skipped


def _encode_chunk(rows: list[dict], template=None):
    """Encode ``rows`` into flat int32 ids/labels, int64 lengths and the skipped count."""
    import numpy as np  # defers numpy
    template = template if template is not None else _WORKER_TEMPLATE
    ids, labels, lengths, skipped = [], [], [], 0
    for enc in encode_each(rows, template):
        if enc is None:
            skipped += 1
            continue
        ids.extend(enc["input_ids"])
        labels.extend(enc["labels"])
        lengths.append(len(enc["input_ids"]))
    return (np.array(ids, dtype=np.int32), np.array(labels, dtype=np.int32),
            np.array(lengths, dtype=np.int64), skipped)


def _init_worker(template) -> None:
    global _WORKER_TEMPLATE
    _WORKER_TEMPLATE = template


def _encode_arrays(rows: list[dict], template, num_proc: int) -> tuple[EncodedDataset, int]:
    size = max(1, min(_CHUNK_ROWS, math.ceil(len(rows) / (num_proc * 8))))
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
    num_proc = min(num_proc, len(chunks))
    if num_proc == 1:
        results = [_encode_chunk(chunk, template) for chunk in chunks]
    else:
        # fork shares the template (tokenizer included) with the workers without pickling it
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        with ctx.Pool(num_proc, initializer=_init_worker, initargs=(template,)) as pool:
            results = list(pool.imap(_encode_chunk, chunks))
    ids, labels, lengths, skipped = zip(*results)
    return EncodedDataset.from_chunks(list(ids), list(labels), list(lengths)), sum(skipped)
