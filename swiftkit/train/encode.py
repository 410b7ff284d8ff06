"""Rows -> token ids + labels with the template, and the collator that batches them."""

from __future__ import annotations

from swiftkit.train.errors import TrainError


def encode_rows(rows: list[dict], template, what: str = "--dataset") -> tuple[list[dict], int]:
    """Encode every row; rows over --max_length (strategy delete) are skipped and counted."""
    from swiftkit.templates import SequenceTooLong

    encoded, skipped = [], 0
    for row in rows:
        try:
            enc = template.encode(row)
        except SequenceTooLong:
            skipped += 1
            continue
        encoded.append({"input_ids": enc["input_ids"], "labels": enc["labels"]})
    if rows and not encoded:
        raise TrainError(
            f"every row of {what} ({len(rows)}) is longer than --max_length {template.max_length}; "
            "raise --max_length or use --truncation_strategy left/right"
        )
    return encoded, skipped


def make_collator(tokenizer, padding_free: bool):
    """Padding-free (one packed row with position_ids) or right-padded batches; labels pad to -100."""
    if padding_free:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")
