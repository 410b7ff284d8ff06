"""Rows -> token ids + labels with the template, and the collator that batches them.

``encode_dataset`` is the recipe's entry point: it encodes in one or several processes (order kept,
results identical), reuses the on-disk cache of :mod:`swiftkit.train.cache` when the same rows were
encoded before with the same template, tokenizer and options, or returns a lazily encoding dataset.
``encode_rows`` is the plain one-process form returning a list of dicts.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, IterableDataset

from swiftkit.train.cache import (
    EncodedDataset,
    cache_key,
    default_cache_dir,
    load_entry,
    save_entry,
)
from swiftkit.train.errors import TrainError

_CHUNK_ROWS = 1024  # rows per task handed to a worker process
_WORKER_TEMPLATE = None  # set in each worker process by _init_worker


def _all_too_long(what: str, n: int, template) -> TrainError:
    return TrainError(
        f"every row of {what} ({n}) is longer than --max_length {template.max_length}; "
        "raise --max_length or use --truncation_strategy left/right"
    )


def encode_each(rows, template):
    """``{"input_ids", "labels"}`` for each row, or None for a row over --max_length (strategy
    delete): the one loop every encoder here shares."""
    from swiftkit.templates import SequenceTooLong

    for row in rows:
        try:
            enc = template.encode(row)
        except SequenceTooLong:
            yield None
            continue
        yield {"input_ids": enc["input_ids"], "labels": enc["labels"]}


def encode_rows(rows: list[dict], template, what: str = "--dataset") -> tuple[list[dict], int]:
    """Encode every row; rows over --max_length (strategy delete) are skipped and counted."""
    encoded, skipped = [], 0
    for enc in encode_each(rows, template):
        if enc is None:
            skipped += 1
            continue
        encoded.append(enc)
    if rows and not encoded:
        raise _all_too_long(what, len(rows), template)
    return encoded, skipped


def encode_dataset(rows: list[dict], template, *, what: str = "--dataset", num_proc: int = 1,
                   cache_dir: str | Path | None = None, use_cache: bool = True,
                   lazy: bool = False) -> tuple[Dataset | EncodedDataset, int]:
    """Encoded ``rows`` for ``transformers.Trainer`` and the number of rows skipped as too long.

    ``num_proc`` > 1 encodes chunks of rows in a process pool. The result is cached under
    ``cache_dir`` (default ``~/.cache/swiftkit/encoded``) unless ``use_cache`` is False; a hit loads
    the arrays without tokenizing. ``lazy=True`` returns a :class:`LazyEncodedDataset` that encodes
    each row when it is read (nothing is encoded or cached up front, the skipped count is 0 and the
    dataset's ``replaced`` counts over-long rows as they are met).
    """
    if isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1:
        raise TrainError(f"--dataset_num_proc must be a positive integer, got {num_proc!r}")
    if lazy:
        return LazyEncodedDataset(rows, template, what), 0
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
        raise _all_too_long(what, len(rows), template)
    if key is not None:
        try:
            data.cache_path = save_entry(root, key, data, skipped)
        except OSError as exc:
            print(f"[swiftkit] could not write the encoded-data cache in {root}: {exc}", file=sys.stderr)
    return data, skipped


def _encode_chunk(rows: list[dict], template=None):
    """Encode ``rows`` into flat int32 ids/labels, int64 lengths and the skipped count."""
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


class LazyEncodedDataset(Dataset):
    """Encodes row ``i`` when it is read; an over-long row is replaced by the next row that fits.

    The replacement is deterministic (the following rows in order, wrapping at the end), so every
    epoch and every worker sees the same data. ``replaced`` is how many distinct rows this process
    has found over-long so far (each DataLoader worker process counts its own).
    """

    def __init__(self, rows: list[dict], template, what: str = "--dataset"):
        self.rows = rows
        self.template = template
        self.what = what
        self._too_long: set[int] = set()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def replaced(self) -> int:
        return len(self._too_long)

    def __getitem__(self, index: int) -> dict:
        from swiftkit.templates import SequenceTooLong

        n = len(self.rows)
        if not -n <= index < n:
            raise IndexError(f"row {index} is out of range for {n} rows")
        for step in range(n):
            j = (index + step) % n
            if j in self._too_long:
                continue
            try:
                enc = self.template.encode(self.rows[j])
            except SequenceTooLong:
                self._too_long.add(j)
                continue
            return {"input_ids": enc["input_ids"], "labels": enc["labels"]}
        raise _all_too_long(self.what, n, self.template)


class StreamingEncodedDataset(IterableDataset):
    """Encodes rows as ``rows()`` yields them (``--streaming``); over-long rows are skipped.

    ``rows`` is called for every pass over the data (the trainer starts a new pass when a stream
    ends before ``--max_steps``); ``skipped`` counts over-long rows met so far in this process.
    """

    def __init__(self, rows, template, what: str = "--dataset"):
        self.rows = rows
        self.template = template
        self.what = what
        self.skipped = 0

    def __iter__(self):
        produced = 0
        for enc in encode_each(self.rows(), self.template):
            if enc is None:
                self.skipped += 1
                continue
            produced += 1
            yield enc
        if not produced:
            raise _all_too_long(self.what, self.skipped, self.template) if self.skipped else TrainError(
                f"{self.what}: the stream has no rows")


def make_collator(tokenizer, padding_free: bool, packed: bool = False):
    """The collator for encoded rows; labels are padded with -100.

    - ``packed`` (rows from :func:`swiftkit.train.packing.pack_rows`): a
      :class:`~swiftkit.train.packing.PackedCollator`; ``padding_free`` joins the batch's bins into
      one row, otherwise each bin is a row and the tail padding forms its own position segment.
    - ``padding_free``: one row holding the batch's sequences, ``position_ids`` restarting per sequence.
    - otherwise: right-padded rows with an attention mask.
    """
    if packed:
        from swiftkit.train.packing import PackedCollator

        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return PackedCollator(pad_token_id=pad or 0, flatten=padding_free)
    if padding_free:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")
