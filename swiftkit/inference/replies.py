"""Replies for a dataset's prompts: what `infer` (batch mode) and eval benchmarks share."""

from __future__ import annotations

from swiftkit.data import load_rows, split_rows


def split_prompt(messages: list[dict]) -> tuple[list[dict], str | None]:
    """A row's prompt and label: the final assistant message is the label (None when absent)."""
    if messages and messages[-1].get("role") == "assistant":
        return list(messages[:-1]), messages[-1].get("content")
    return list(messages), None


def generation_kwargs(g) -> dict:
    """The keyword arguments of ``engine.generate`` / ``engine.stream`` from :class:`GenerationArgs`."""
    return {
        "max_new_tokens": g.max_new_tokens, "temperature": g.temperature, "top_p": g.top_p,
        "top_k": g.top_k, "repetition_penalty": g.repetition_penalty,
    }


def batched_replies(engine, prompts, batch_size: int, gen_kwargs: dict):
    """Generate replies for ``prompts`` (message lists) ``batch_size`` at a time; yields each
    batch's replies in order."""
    for first in range(0, len(prompts), batch_size):
        yield engine.generate(list(prompts[first:first + batch_size]), **gen_kwargs)


def load_val_rows(cfg, registries, *, require_reply: bool) -> list[dict]:
    """The ``--val_dataset`` rows of an inference-side config (messages rows); without it, the share of
    ``--dataset`` that ``--split_dataset_ratio`` holds out, read and split exactly as training did (same
    options and seed, so the rows are the ones that run validated on)."""

    d = cfg.data
    options = dict(registries=registries, seed=d.data_seed, model_name=tuple(d.model_name),
                   model_author=tuple(d.model_author), use_hf=cfg.model.use_hf, cache_dir=cfg.model.cache_dir,
                   columns=d.column_map, max_row_bytes=d.max_row_bytes)
    if d.val_dataset:
        return load_rows(d.val_dataset, require_reply=require_reply, **options)
    rows = load_rows(d.dataset, skip_bad_rows=d.skip_bad_rows, **options)
    return split_rows(rows, d.split_dataset_ratio, seed=d.data_seed)[1]
