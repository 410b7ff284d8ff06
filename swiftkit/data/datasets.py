"""Datasets that encode rows while training: ``--lazy_tokenize`` (map-style) and ``--streaming`` (iterable).

They are torch datasets (the trainer treats an ``IterableDataset`` as a stream), so this module
imports torch; :mod:`swiftkit.data.encode` holds the encoding itself.
"""

from __future__ import annotations

from torch.utils.data import Dataset, IterableDataset

from swiftkit.data.encode import all_too_long, encode_each
from swiftkit.data.errors import DatasetError
from swiftkit.data.length import check_length
from swiftkit.templates import SequenceTooLong


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
        n = len(self.rows)
        if not -n <= index < n:
            raise IndexError(f"row {index} is out of range for {n} rows")
        for step in range(n):
            j = (index + step) % n
            if j in self._too_long:
                continue
            try:
                check_length(self.template, self.rows[j])
                enc = self.template.encode(self.rows[j])
            except SequenceTooLong:
                self._too_long.add(j)
                continue
            return dict(enc)  # ids and labels (and a row with images: its processor features)
        raise all_too_long(self.what, n, self.template)


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
            raise all_too_long(self.what, self.skipped, self.template) if self.skipped else DatasetError(
                f"{self.what}: the stream has no rows")
