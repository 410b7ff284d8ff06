"""``--dry_run``'s view of the data: counts, token lengths, steps, and the largest batch to trace.

The rows are the ones the run itself loaded and encoded (``--lazy_tokenize`` rows are encoded here;
a ``--streaming`` source is not read ahead). Steps are counted as transformers' Trainer counts them.
The largest batch is made of the longest rows (with ``--packing``, the fullest bins): the memory
estimate is for the worst step of the run, not an average one.
"""

from __future__ import annotations

from swiftkit.data.encode import encode_rows
from swiftkit.data.encode_alignment import real_tokens
from swiftkit.data.lint import duplicate_problems
from swiftkit.train import estimate
from swiftkit.train.estimate_trace import TraceBatch
from swiftkit.train.packing import pack_rows


def _counts(rows, val_data, too_long: int) -> dict:
    return {"train_rows": None, "val_rows": len(val_data), "bad_rows_skipped": rows.bad_rows_skipped,
            "rows_too_long": too_long}


def _lengths(out: dict, lengths: list[int], what: str = "tokens") -> dict:
    out.update(train_rows=len(lengths), tokens=sum(lengths), max_tokens=max(lengths),
               mean_tokens=round(sum(lengths) / len(lengths), 1), tokens_counted=what,
               histogram=estimate.length_histogram(lengths))
    return out


def _row_lengths(encoded) -> list[int]:
    """Tokens per encoded row (an EncodedDataset knows them without building the rows)."""
    lengths = getattr(encoded, "lengths", None)
    if lengths is None:
        lengths = [len(r["input_ids"]) for r in encoded]
    return [int(n) for n in lengths]


def _labelled(row) -> list[int]:
    """Positions whose next token is labelled (where the default trainer computes logits)."""
    labels = list(row["labels"])
    return [i for i in range(len(labels) - 1) if labels[i + 1] != -100]


def _segments(row: dict) -> list[int]:
    """The lengths of the sequences a packed row holds (its position ids restart at 0 for each)."""
    positions = row.get("position_ids")
    if positions is None:
        return [len(row["input_ids"])]
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return [b - a for a, b in zip(starts, starts[1:])]


def _schedule(cfg, trainer_rows: int, tokens: int | None) -> dict:
    tr = cfg.training
    batch, ga = tr.per_device_train_batch_size, tr.gradient_accumulation_steps
    per_epoch = estimate.steps_per_epoch(trainer_rows, batch, ga, tr.dataloader_drop_last)
    total = estimate.total_steps(per_epoch, tr.max_steps, tr.num_train_epochs)
    out = {"rows_per_step": batch * ga, "trainer_rows": trainer_rows, "steps_per_epoch": per_epoch,
           "total_steps": total, "epochs": round(total / per_epoch, 3)}
    if tokens is not None:
        out.update(tokens_per_epoch=tokens, tokens_per_step=round(tokens / per_epoch, 1))
    return out


# -- sft / pt ------------------------------------------------------------------------------------


def sft_data(cfg, rows, train_data, val_data, template, too_long: int) -> tuple[dict, list | None]:
    """``(summary, encoded training rows)``: counts and the token-length histogram (the rows are
    None for a stream)."""
    out = _counts(rows, val_data, too_long)
    if rows.train is None:
        out["streaming"] = True
        return out, None
    encoded = train_data
    if cfg.data.lazy_tokenize:
        encoded, skipped = encode_rows(rows.train, template, "--dataset")
        out["rows_too_long"] = too_long + skipped
    lengths = _row_lengths(encoded)
    out["duplicates"] = len(duplicate_problems(rows.train))
    return _lengths(out, lengths), encoded


def sft_schedule_and_batch(cfg, encoded, template, *, packing: bool, padding_free: bool):
    """``(schedule, trace batch)`` of an sft/pt run: steps, tokens per step (real tokens, as the
    run's token counter counts them) and the largest batch."""
    tr = cfg.training
    batch, ga = tr.per_device_train_batch_size, tr.gradient_accumulation_steps
    if encoded is None:
        limit = template.max_length or 2048
        schedule = {"rows_per_step": batch * ga, "steps_per_epoch": None, "total_steps": tr.max_steps,
                    "note": f"--streaming: the data is not read ahead; at most {batch * ga * limit} tokens per step"}
        if padding_free:
            return schedule, TraceBatch(1, batch * limit, [[limit] * batch], batch * limit)
        return schedule, TraceBatch(batch, limit, None, limit)
    rows = pack_rows(encoded, template.max_length) if packing else encoded
    lengths = _row_lengths(rows)
    schedule = _schedule(cfg, len(lengths), sum(lengths))
    longest = [rows[k] for k in sorted(range(len(lengths)), key=lambda k: -lengths[k])[:batch]]
    if padding_free:
        flat = [n for row in longest for n in _segments(row)]
        return schedule, TraceBatch(1, sum(flat), [flat], sum(len(_labelled(r)) for r in longest))
    union = {p for row in longest for p in _labelled(row)}
    width = max(len(r["input_ids"]) for r in longest)
    return schedule, TraceBatch(len(longest), width, [_segments(r) for r in longest] if packing else None,
                                len(union))


# -- rlhf ----------------------------------------------------------------------------------------


def _sequences(method: str, row: dict) -> list[int]:
    """The sequences the policy runs for one encoded row of an offline method, as token counts."""
    if method == "kto":  # the reply, and the mismatched reply of the KL term when there is one
        prompt, kl = len(row["prompt_ids"]), row.get("KL_completion_ids")
        return [prompt + len(row["completion_ids"])] + ([prompt + len(kl)] if kl else [])
    prompt = len(row.get("prompt_ids", ()))
    return [prompt + len(row["chosen_ids"]), prompt + len(row["rejected_ids"])]


def rlhf_data_and_batch(cfg, method: str, rows, train_data, val_data, template, too_long: int):
    """``(summary, schedule, trace batch)`` of an rlhf run. Pairwise methods run chosen and rejected
    replies as rows of one padded batch (twice the rows); grpo/ppo run prompt + --max_completion_length."""
    out = _counts(rows, val_data, too_long)
    train = [train_data[i] for i in range(len(train_data))]
    if method in ("grpo", "ppo"):
        prompts = ([len(template.encode_prompt(r["messages"], r.get("tools"))) for r in rows.train] if method == "grpo"
                   else [len(r["input_ids"]) for r in train])
        _lengths(out, prompts, "prompt tokens (replies are generated)")
        sequences = [[n + cfg.rollout.max_completion_length] for n in prompts]
        tokens = None
    else:
        sequences = [_sequences(method, r) for r in train]
        _lengths(out, [real_tokens(method, [r]) for r in train], "tokens the policy runs per row")
        tokens = out["tokens"]
    trainer_rows = len(train) * (cfg.grpo.num_generations if method == "grpo" else 1)
    schedule = _schedule(cfg, trainer_rows, tokens)
    if method == "grpo":
        schedule["note"] = f"each prompt is sampled --num_generations {cfg.grpo.num_generations} times"
    batch = cfg.training.per_device_train_batch_size
    widest = [n for seqs in sorted(sequences, key=lambda seqs: -max(seqs))[:batch] for n in seqs]
    return out, schedule, TraceBatch(len(widest), max(widest), None, max(widest))
