"""Calibration rows and the held-aside perplexity sample, from swiftkit's own data pipeline and template.

GPTQ and AWQ fit the quantized weights to the activations of calibration text; the text that matters is
what the model will serve, rendered the way it will see it. So the rows come from ``--dataset`` (files,
registered names or hub ids, as in training; default the built-in ``calibration-mix`` sample of 96
conversations) and are encoded by the run's chat template, whole conversations with their replies, cut to
``--quant_seqlen`` tokens. The first ``--quant_n_samples`` rows calibrate; up to :data:`HELD_ASIDE` of the
rows after them are held aside for the parity report's perplexity, so that number is measured on text the
quantizer never saw.
"""

from __future__ import annotations

from swiftkit.data import load_rows

DEFAULT_SAMPLE = "calibration-mix"
HELD_ASIDE = 16


def _encoded(template, row: dict, seqlen: int) -> dict | None:
    try:
        encoded = template.encode({k: v for k, v in row.items() if not k.startswith("_")})
    except ValueError:  # a row the template cannot take (too long with truncation "delete", ...)
        return None
    ids, labels = encoded["input_ids"][:seqlen], encoded["labels"][:seqlen]
    if not ids or all(label < 0 for label in labels):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def calibration_rows(cfg, template, registries, *, need_calibration: bool) -> tuple[list[dict], list[dict]]:
    """``(calibration, held_aside)``: rows ``{"input_ids", "attention_mask", "labels"}`` encoded by
    ``template``. ``calibration`` is empty unless ``need_calibration``; ``held_aside`` has up to
    :data:`HELD_ASIDE` rows not used for calibration."""
    q, d = cfg.quantize, cfg.data
    specs = list(d.dataset) or [DEFAULT_SAMPLE]
    rows = load_rows(specs, registries=registries, seed=d.data_seed, model_name=tuple(d.model_name),
                     model_author=tuple(d.model_author), use_hf=cfg.model.use_hf, cache_dir=cfg.model.cache_dir,
                     columns=d.column_map, skip_bad_rows=d.skip_bad_rows, max_row_bytes=d.max_row_bytes)
    encoded = [e for e in (_encoded(template, row, q.quant_seqlen) for row in rows) if e is not None]
    n = min(q.quant_n_samples, max(len(encoded) - 1, 1)) if need_calibration else 0
    return encoded[:n], encoded[n:n + HELD_ASIDE]
