"""The collators that batch encoded rows for the trainer (labels padded with -100)."""

from __future__ import annotations

from swiftkit.data.vision import collate_features
from swiftkit.train.packing import PackedCollator


def _per_token(key: str, values: list) -> bool:
    """Whether the processor feature ``key`` has one value per token of its row (``token_type_ids``), as each row
    that has it shows: a (1, tokens) tensor. Audio clips' features and masks (``input_features*``) are per clip,
    whatever their length."""
    present = [(value, row) for value, row in values if value is not None]
    return not key.startswith("input_features") and all(
        getattr(value, "dim", lambda: 0)() == 2 and tuple(value.shape) == (1, len(row["input_ids"]))
        for value, row in present)


class VisionCollator:
    """Right-padded rows whose processor features (``pixel_values``, ``image_grid_thw``, ...) are batched by
    :func:`swiftkit.data.vision.collate_features`; rows without images are plain text rows."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorForSeq2Seq  # defers transformers

        self.text = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")

    def __call__(self, rows: list[dict]) -> dict:
        text = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
        features = [{k: v for k, v in r.items() if k not in ("input_ids", "labels")} for r in rows]
        for key in {k for f in features for k in f}:  # a per-token feature: zeros for the rows without images
            if _per_token(key, [(f.get(key), r) for f, r in zip(features, rows)]):
                sample = next(f[key] for f in features if key in f)
                for f, r in zip(features, rows):
                    f.setdefault(key, sample.new_zeros((1, len(r["input_ids"]))))
        batch = dict(self.text(text))
        # per-token features (token_type_ids) are padded to the longest row, as the ids are
        batch.update(collate_features(features))
        return batch


class VisionPreferenceCollator:
    """TRL's preference collator, plus the pixel features of the rows with images (DPO on a vision-language model;
    :meth:`swiftkit.data.vision.VisionEncoder.pair_features` makes them per batch)."""

    def __init__(self, collator, encoder):
        self.collator = collator
        self.encoder = encoder

    def __call__(self, examples: list[dict]) -> dict:
        text = [{k: v for k, v in ex.items() if k not in ("image_refs", "prompt_text")} for ex in examples]
        batch = dict(self.collator(text))
        if any(ex.get("image_refs") for ex in examples):
            batch.update(self.encoder.pair_features(examples))
        return batch


def make_collator(tokenizer, padding_free: bool, packed: bool = False, vision: bool = False):
    """The collator for encoded rows; labels are padded with -100.

    - ``packed`` (rows from :func:`swiftkit.train.packing.pack_rows`): a
      :class:`~swiftkit.train.packing.PackedCollator`; ``padding_free`` joins the batch's bins into
      one row, otherwise each bin is a row and the tail padding forms its own position segment.
    - ``padding_free``: one row holding the batch's sequences, ``position_ids`` restarting per sequence.
    - ``vision`` (rows that may hold images): a :class:`VisionCollator`.
    - otherwise: right-padded rows with an attention mask.
    """
    if vision:
        return VisionCollator(tokenizer)
    if packed:

        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return PackedCollator(pad_token_id=pad or 0, flatten=padding_free)
    if padding_free:
        from transformers import DataCollatorWithFlattening  # defers transformers

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    from transformers import DataCollatorForSeq2Seq  # defers transformers

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")
