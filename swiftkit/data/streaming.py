"""Rows of large corpora one at a time (``--streaming``): lazy sources and the ways to combine them.

Sources, each an iterator of raw rows with ``_origin`` (the same rows the list readers return):
:func:`iter_file` and :func:`iter_folder` (local files, from :mod:`swiftkit.data.readers`) and
:func:`iter_hub_rows` (hub datasets, from :mod:`swiftkit.data.hub`). Combinators: :func:`take`
(the first N rows), :func:`interleave` (mix several streams with probabilities, seeded) and
:func:`shuffle_buffer` (an approximate shuffle in bounded memory, seeded).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator, Sequence

from swiftkit.data.convert import RowError, check_row_limits, rename_columns, to_messages_row, to_text_row
from swiftkit.data.errors import DatasetError
from swiftkit.data.hub import iter_hub_rows
from swiftkit.data.limits import DEFAULT_MAX_ROW_BYTES
from swiftkit.data.loader import LoadReport, parse_spec, raw_iter
from swiftkit.data.readers import iter_file, iter_folder

__all__ = ["interleave", "iter_file", "iter_folder", "iter_hub_rows", "shuffle_buffer", "take"]

STOP_RULES = ("first", "all")


def take(rows: Iterable[dict], n: int) -> Iterator[dict]:
    """The first ``n`` rows of ``rows``, lazily; no row after the n-th is read."""
    if n < 0:
        raise DatasetError(f"take: the row count must be >= 0, got {n}")
    return itertools.islice(rows, n)


def interleave(streams: Sequence[Iterable[dict]], probs: Sequence[float] | None = None, seed: int = 42, *,
               stop: str = "first") -> Iterator[dict]:
    """Rows drawn from ``streams``: each next row comes from stream i with probability ``probs[i]``.

    ``probs`` are weights (normalised; default equal); a stream with weight 0 is never read. The
    sequence of choices depends only on ``seed`` and the weights, so the same inputs give the same
    mix. ``stop="first"`` ends the mix when a chosen stream runs out (the proportions hold up to
    the end); ``stop="all"`` drops a finished stream and goes on with the others, with their
    weights renormalised, until every stream has run out (each row is yielded exactly once).
    """
    if stop not in STOP_RULES:
        raise DatasetError(f"interleave: stop must be one of {STOP_RULES}, got {stop!r}")
    if not streams:
        raise DatasetError("interleave: no streams given")
    weights = [1.0] * len(streams) if probs is None else [float(p) for p in probs]
    if len(weights) != len(streams):
        raise DatasetError(f"interleave: {len(streams)} streams but {len(weights)} probabilities")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise DatasetError(f"interleave: probabilities must be finite, >= 0 and not all 0, got {list(probs)}")
    return _interleave([iter(s) for s in streams], weights, random.Random(seed), stop)


def _interleave(iterators: list[Iterator[dict]], weights: list[float], rng: random.Random, stop: str):
    live = [i for i, w in enumerate(weights) if w > 0]
    while live:
        (k,) = rng.choices(live, weights=[weights[i] for i in live])
        try:
            row = next(iterators[k])
        except StopIteration:
            if stop == "first":
                return
            live.remove(k)
            continue
        yield row


def shuffle_buffer(rows: Iterable[dict], buffer_size: int, seed: int = 42) -> Iterator[dict]:
    """``rows`` in a seeded random order, holding at most ``buffer_size`` rows at a time.

    Each incoming row takes the place of a randomly chosen buffered row, which is yielded; the rest
    of the buffer is yielded shuffled at the end. A row moves at most about ``buffer_size``
    places early, so a stream sorted by source needs a buffer larger than one source's run.
    """
    if buffer_size < 1:
        raise DatasetError(f"shuffle_buffer: buffer_size must be >= 1, got {buffer_size}")
    return _shuffled(iter(rows), buffer_size, random.Random(seed))


def _shuffled(rows: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    buffer = list(itertools.islice(rows, size))
    for row in rows:
        i = rng.randrange(len(buffer))
        buffer[i], row = row, buffer[i]
        yield row
    rng.shuffle(buffer)
    yield from buffer


def stream_rows(specs: Sequence[str], *, registries, seed: int = 42,
                model_name: Sequence[str] = (), model_author: Sequence[str] = (), use_hf: bool = False,
                cache_dir: str | None = None, text_only: bool = False, columns: dict | None = None,
                skip_bad_rows: bool = False, report=None, buffer_size: int = 1000,
                max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> Iterator[dict]:
    """Canonical rows of ``--dataset`` specs, read lazily (``--streaming``).

    Sources are resolved now (an unknown name fails at once); rows are read, converted and mixed as
    the iterator is consumed. ``#N`` takes the first N rows of a spec; ``#R`` is its weight when
    several specs are mixed (each next row comes from spec i with probability proportional to its
    weight, until all are used up). The mix passes through a seeded shuffle buffer of
    ``buffer_size`` rows. A bad row raises its :class:`~swiftkit.data.convert.RowError` when the
    stream reaches it, or with ``skip_bad_rows`` is left out and recorded in ``report``
    (a :class:`~swiftkit.data.loader.LoadReport`). A row over ``max_row_bytes`` (0: no limit) or
    nested too deeply is a bad row; JSON lines over the limit are never read whole.
    """

    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise DatasetError("no dataset given: pass --dataset FILE|NAME|ORG/NAME[#N]")
    report = report if report is not None else LoadReport()
    convert = to_text_row if text_only else to_messages_row

    def converted(raw: Iterator[dict]) -> Iterator[dict]:
        for row in raw:
            report.rows_read += 1
            try:
                check_row_limits(row, max_row_bytes)
                yield convert(rename_columns(row, columns) if columns else row)
            except RowError as exc:
                if not skip_bad_rows:
                    raise
                report.skipped.append(exc)

    streams, weights = [], []
    for text in specs:
        spec = parse_spec(text)
        rows = converted(raw_iter(spec, registries=registries, streaming=True,
                                  use_hf=use_hf, cache_dir=cache_dir, model_name=tuple(model_name),
                                  model_author=tuple(model_author), max_row_bytes=max_row_bytes))
        streams.append(take(rows, spec.count) if spec.count is not None else rows)
        weights.append(spec.ratio if spec.ratio is not None else 1.0)
    mixed = streams[0] if len(streams) == 1 else interleave(streams, weights, seed, stop="all")
    return shuffle_buffer(mixed, buffer_size, seed) if buffer_size > 1 else mixed
