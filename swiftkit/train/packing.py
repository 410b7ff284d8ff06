"""Packing: is it exact for this model, bin-packing encoded rows, their collator, padding waste.

``pack_rows`` groups encoded rows into bins of at most ``max_length`` tokens (best-fit decreasing),
``PackedCollator`` batches such bins and ``padding_stats`` measures how many padded tokens a
collator adds per real token.

Is padding-free packing exact for this model? Checked, not assumed.

A padding-free batch is one row holding several sequences, separated only by ``position_ids``
restarting at 0. That is exact only when the model's attention turns those positions into a
block-diagonal mask (transformers 5 does for its built-in decoders when no KV cache is used).
Remote-code or older models may not; then sequences would silently attend to each other. The probe
runs two short sequences packed and alone and compares the logits (two forward passes of a few
tokens).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from itertools import chain

from swiftkit.train.errors import TrainError


def packing_is_exact(model, vocab_size: int | None = None, atol: float = 1e-3) -> bool:
    """True when packed sequences give the same logits as the sequences run alone."""
    import torch  # defers torch

    vocab = vocab_size or model.config.get_text_config().vocab_size
    gen = torch.Generator().manual_seed(0)
    first = torch.randint(0, vocab, (1, 7), generator=gen)
    second = torch.randint(0, vocab, (1, 5), generator=gen)
    packed = torch.cat([first, second], dim=1)
    positions = torch.cat([torch.arange(7), torch.arange(5)]).unsqueeze(0)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = torch.cat(
                [model(input_ids=x.to(device), use_cache=False).logits for x in (first, second)], dim=1
            )
            together = model(input_ids=packed.to(device), position_ids=positions.to(device),
                             use_cache=False).logits
    except (TypeError, ValueError, RuntimeError):
        return False
    finally:
        model.train(was_training)
    return together.shape == alone.shape and torch.allclose(together.float(), alone.float(), atol=atol)


# -- packing encoded rows into bins -------------------------------------------------------------


def _best_fit_decreasing(lengths, capacity: int) -> list[list[int]]:
    """Indices grouped into bins of at most ``capacity`` tokens: longest first, each into the bin
    it fills most tightly (ties: the most recently used such bin). Deterministic."""

    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[int] = []  # sorted distinct remaining capacities that some open bin has
    by_free: dict[int, list[int]] = {}  # remaining capacity -> bins with it
    for i in order:
        size = int(lengths[i])
        if size == 0:
            continue
        k = bisect_left(free, size)
        if k == len(free):
            b, room = len(bins), capacity
            bins.append([])
        else:
            room = free[k]
            b = by_free[room].pop()
            if not by_free[room]:
                del by_free[room]
                free.pop(k)
        bins[b].append(i)
        room -= size
        if room > 0:
            if room not in by_free:
                insort(free, room)
                by_free[room] = []
            by_free[room].append(b)
    for members in bins:
        members.sort()
    bins.sort(key=lambda members: members[0])
    return bins


def pack_rows(encoded, max_length: int) -> list[dict]:
    """Encoded rows bin-packed into rows of at most ``max_length`` tokens.

    Each packed row is ``{"input_ids", "labels", "position_ids"}``: its samples in their original
    order, ``position_ids`` restarting at 0 for each sample, and the label of each sample's first
    token set to -100 so no sample learns to predict from the previous sample's last token.
    ``encoded`` is a list of ``{"input_ids", "labels"}`` dicts or an
    :class:`~swiftkit.data.cache.EncodedDataset`.
    """

    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise TrainError(f"packing needs a positive --max_length, got {max_length!r}")
    lengths = getattr(encoded, "lengths", None)
    if lengths is None:
        lengths = [len(row["input_ids"]) for row in encoded]
    for i, size in enumerate(lengths):
        if size > max_length:
            raise TrainError(f"encoded row {i} has {int(size)} tokens, over the packing length {max_length}")
    packed = []
    for members in _best_fit_decreasing(lengths, max_length):
        ids, labels, positions = [], [], []
        for i in members:
            row = encoded[i]
            ids.extend(row["input_ids"])
            labels.append(-100)
            labels.extend(row["labels"][1:])
            positions.extend(range(len(row["input_ids"])))
        packed.append({"input_ids": ids, "labels": labels, "position_ids": positions})
    return packed


def _positions_and_labels(feature: dict) -> tuple[list[int], list[int]]:
    """A feature's position_ids and labels; an unpacked row is one sample starting at position 0."""
    positions = feature.get("position_ids")
    if positions is not None:
        return list(positions), list(feature["labels"])
    labels = list(feature["labels"])
    return list(range(len(feature["input_ids"]))), [-100, *labels[1:]]


class PackedCollator:
    """Batches packed rows; the attention keeps samples apart through ``position_ids`` alone.

    ``flatten=True``: the batch's rows joined into one row (shape ``[1, total]``).
    ``flatten=False``: one row per packed row, right-padded to the longest; the padding gets
    positions 0, 1, ... so it forms a segment of its own that no real token attends to.
    No ``attention_mask`` is returned: transformers builds the block-diagonal causal mask from
    ``position_ids`` only when no mask is given. Returns ``input_ids``, ``labels``, ``position_ids``.
    """

    def __init__(self, pad_token_id: int = 0, flatten: bool = False):
        self.pad_token_id = pad_token_id
        self.flatten = flatten

    def __call__(self, features: list[dict]) -> dict:
        import torch  # defers torch

        rows = []
        for f in features:
            positions, labels = _positions_and_labels(f)
            rows.append((list(f["input_ids"]), labels, positions))
        if self.flatten:
            rows = [tuple(list(chain.from_iterable(r[k] for r in rows)) for k in range(3))]
        width = max(len(r[0]) for r in rows)
        ids, labels, positions = [], [], []
        for row_ids, row_labels, row_positions in rows:
            pad = width - len(row_ids)
            ids.append(row_ids + [self.pad_token_id] * pad)
            labels.append(row_labels + [-100] * pad)
            positions.append(row_positions + list(range(pad)))
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "position_ids": torch.tensor(positions, dtype=torch.long),
        }


def padding_stats(batches, collator) -> float:
    """Padded tokens / real tokens when ``collator`` batches ``batches`` (lists of encoded rows).

    Real tokens are the rows' own tokens; padded ones are the rest of what the model computes
    (``input_ids.numel()``).
    """
    real = computed = 0
    for features in batches:
        real += sum(len(f["input_ids"]) for f in features)
        computed += collator(features)["input_ids"].numel()
    return (computed - real) / real if real else 0.0
