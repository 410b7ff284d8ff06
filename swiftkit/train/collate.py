"""The collators that batch encoded rows for the trainer (labels padded with -100)."""

from __future__ import annotations

from swiftkit.train.packing import PackedCollator


def make_collator(tokenizer, padding_free: bool, packed: bool = False):
    """The collator for encoded rows; labels are padded with -100.

    - ``packed`` (rows from :func:`swiftkit.train.packing.pack_rows`): a
      :class:`~swiftkit.train.packing.PackedCollator`; ``padding_free`` joins the batch's bins into
      one row, otherwise each bin is a row and the tail padding forms its own position segment.
    - ``padding_free``: one row holding the batch's sequences, ``position_ids`` restarting per sequence.
    - otherwise: right-padded rows with an attention mask.
    """
    if packed:

        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return PackedCollator(pad_token_id=pad or 0, flatten=padding_free)
    if padding_free:
        from transformers import DataCollatorWithFlattening  # defers transformers

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    from transformers import DataCollatorForSeq2Seq  # defers transformers

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")
