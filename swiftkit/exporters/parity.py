"""Parity of an exported artifact with the model it was exported from.

Before export, :func:`reference` runs the *source* model (base + adapters as the user serves it, a peft model
or a 4-bit QLoRA base included) on :data:`PARITY_CONVERSATIONS`: the ids training's template gives each
conversation, the logits at every position, greedy replies to a few prompts and the perplexity of held-aside
rows. After export, :func:`check_artifact` loads the artifact exactly as ``--model FOLDER`` loads it (a GGUF
file and quantized checkpoints included) and reports:

- template parity: the artifact's own ``apply_chat_template`` gives the training ids, whole and as a
  generation prompt (a broken or missing chat template in the export is the classic silent failure);
- stop tokens: generation stops where replies ended in training (generation_config eos ids, a GGUF file's eos
  id, an Ollama Modelfile's stop lines);
- logits: mean and max absolute difference and top-1 agreement over every parity position (the quantization
  error, ~0 for a merged export);
- greedy replies and perplexity, source against artifact.

The report is a JSON-able dict with ``ok``, ``failures``, ``warnings`` (top-1 agreement under 50%), the
sections above and their headline numbers flat (``template_ok``, ``stop_tokens_ok``, ``top1_agreement``,
``max_logit_diff``, ``mean_logit_diff``, ``greedy_match``: what a model card's parity table reads);
:func:`raise_for_failures` turns a template or stop-token failure (or non-finite logits) into a one-line
:class:`ParityError` once the report is written.
:func:`~swiftkit.exporters.parity_report.summary_lines` prints it for people.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftkit.exporters.parity_report import (
    LogitStats,
    ParityError,
    perplexity_entry,
    reply_parity,
    stop_token_parity,
    summary_lines,
    template_parity,
)
from swiftkit.models import load_model, load_tokenizer, resolve_model
from swiftkit.models.artifacts import quantization_method, read_gguf_fields
from swiftkit.templates import TemplateError

__all__ = ["PARITY_CONVERSATIONS", "ParityError", "ParityReference", "check_artifact", "raise_for_failures",
           "reference", "summary_lines"]

IGNORE_INDEX = -100

PARITY_CONVERSATIONS: list[list[dict]] = [
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris is the capital of France."},
    ],
    [
        {"role": "system", "content": "You are a helpful assistant who answers in one sentence."},
        {"role": "user", "content": "Write a line about the sea and the sky."},
        {"role": "assistant", "content": "The sea reflects the sky, blue on blue."},
    ],
    [
        {"role": "user", "content": "Hello! Can you help me with a short list?"},
        {"role": "assistant", "content": "Of course. What should the list hold?"},
        {"role": "user", "content": "Three colours, please."},
        {"role": "assistant", "content": "Red, green and blue."},
    ],
    [
        {"role": "system", "content": "Réponds brièvement, en français ou en chinois."},
        {"role": "user", "content": "你好，请用一句话介绍你自己。Ça va ?"},
        {"role": "assistant", "content": "你好！我是一个人工智能助手。Ça va très bien, merci ! 🙂"},
    ],
]


@dataclass
class ConversationReference:
    """One parity conversation on the source model."""

    messages: list[dict]
    prompt_messages: list[dict]  # the messages up to the last user turn
    ids: list[int] | None = None  # template.encode's input_ids; None when the template rejected it
    prompt_ids: list[int] | None = None  # template.encode_prompt(prompt_messages)
    logits: Any = None  # float32 CPU tensor [len(ids), vocab]
    note: str | None = None  # why the conversation was skipped


@dataclass
class ParityReference:
    """What :func:`reference` recorded on the source model, compared by :func:`check_artifact`."""

    conversations: list[ConversationReference]
    prompts: list[list[dict]]
    replies: list[list[int]]  # greedy reply ids per prompt (stop token included when reached)
    reply_texts: list[str]
    prompt_ids: list[list[int]]
    max_new_tokens: int
    ppl_rows: list[dict] = field(default_factory=list)
    perplexity: float | None = None
    ppl_tokens: int = 0


def _device(model):
    import torch  # defers torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _logits(model, ids: list[int]):
    """float32 CPU logits ``[len(ids), vocab]``."""
    import torch  # defers torch

    tensor = torch.tensor([ids], device=_device(model))
    with torch.no_grad():
        out = model(input_ids=tensor, attention_mask=torch.ones_like(tensor))
    return out.logits[0].float().cpu()


def _greedy(model, prompt_ids: list[int], stop_ids: list[int], pad_id: int | None, max_new_tokens: int) -> list[int]:
    import torch  # defers torch
    from transformers import GenerationConfig  # defers transformers

    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=list(stop_ids),
                              pad_token_id=pad_id if pad_id is not None else stop_ids[0])
    tensor = torch.tensor([prompt_ids], device=_device(model))
    with torch.no_grad():
        out = model.generate(input_ids=tensor, attention_mask=torch.ones_like(tensor), generation_config=config)
    return [int(i) for i in out[0, len(prompt_ids):].tolist()]


def _perplexity(model, rows: list[dict]) -> tuple[float | None, int]:
    """exp(mean next-token loss) over the label positions of ``rows`` (one row per forward pass)."""
    import torch  # defers torch

    total, count = 0.0, 0
    for row in rows:
        ids = [int(i) for i in row["input_ids"]]
        labels = torch.tensor([int(i) for i in row.get("labels", ids)][1:])
        mask = labels != IGNORE_INDEX
        if len(ids) < 2 or not bool(mask.any()):
            continue
        logits = _logits(model, ids)[:-1]
        loss = torch.nn.functional.cross_entropy(logits[mask], labels[mask], reduction="sum")
        total += float(loss)
        count += int(mask.sum())
    if not count:
        return None, 0
    return (math.exp(total / count) if total / count < 700 else math.inf), count


def _prompt_part(messages: list[dict]) -> list[dict]:
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return messages[:last_user + 1]


def _pad_id(template) -> int | None:
    return template.tokenizer.pad_token_id


def reference(model, template, *, ppl_rows: list[dict], prompts: list[list[dict]] | None = None,
              max_new_tokens: int = 16) -> ParityReference:
    """Record the source ``model``'s behaviour on :data:`PARITY_CONVERSATIONS`: ids and logits per conversation,
    greedy replies to ``prompts`` (default: each parity conversation up to its last user turn), and the
    perplexity of ``ppl_rows`` (encoded rows ``{"input_ids", "labels"}``, -100 where no loss; none: skipped).
    The model is put in eval mode. A conversation the template rejects is skipped with a note."""
    model.eval()
    convs = []
    for messages in PARITY_CONVERSATIONS:
        conv = ConversationReference(messages=messages, prompt_messages=_prompt_part(messages))
        try:
            conv.ids = [int(i) for i in template.encode({"messages": messages})["input_ids"]]
            conv.prompt_ids = [int(i) for i in template.encode_prompt(conv.prompt_messages)]
        except TemplateError as exc:  # e.g. a template without system messages, or --max_length below it
            conv.ids, conv.prompt_ids, conv.note = None, None, f"the training template rejects it: {exc}"
        if conv.ids is not None:
            conv.logits = _logits(model, conv.ids)
        convs.append(conv)
    if all(c.ids is None for c in convs):
        raise ParityError(f"parity: the template rejects every parity conversation ({convs[0].note}); pass "
                          "--check_parity false to export without the parity check")
    if prompts is None:
        prompts = [c.prompt_messages for c in convs if c.ids is not None]
    prompt_ids = [[int(i) for i in template.encode_prompt(p)] for p in prompts]
    stops = list(template.stop_token_ids)
    replies = [_greedy(model, ids, stops, _pad_id(template), max_new_tokens) for ids in prompt_ids]
    ppl, tokens = _perplexity(model, ppl_rows) if ppl_rows else (None, 0)
    return ParityReference(
        conversations=convs, prompts=list(prompts), replies=replies,
        reply_texts=[template.decode(r) for r in replies], prompt_ids=prompt_ids, max_new_tokens=max_new_tokens,
        ppl_rows=list(ppl_rows), perplexity=ppl, ppl_tokens=tokens,
    )


def _on_accelerator(model):
    import torch  # defers torch

    if not torch.cuda.is_available() or _device(model).type == "cuda":
        return model
    try:
        return model.to("cuda")
    except (ValueError, RuntimeError):  # e.g. a bitsandbytes 8-bit model cannot move after loading: stays put
        return model


def _artifact_outputs(model, tokenizer, reference: ParityReference, template, max_new_tokens: int, stats):
    for index, conv in enumerate(reference.conversations):
        if conv.ids is not None:
            stats.add(index, _logits(model, conv.ids), conv.logits)
    stops = list(template.stop_token_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _pad_id(template)
    replies = [_greedy(model, ids, stops, pad, max_new_tokens) for ids in reference.prompt_ids]
    ppl = _perplexity(model, reference.ppl_rows)[0] if reference.ppl_rows else None
    return replies, ppl


def check_artifact(folder: Path, reference: ParityReference, template, *, max_new_tokens: int = 16,
                   torch_dtype="auto", registry=None) -> dict:
    """The parity report of the artifact in ``folder`` against ``reference`` (see the module docstring).

    The artifact is loaded as ``--model folder`` loads it (``resolve_model``, ``load_tokenizer``,
    ``load_model``; on CUDA when there is one) and freed before returning. ``registry`` (the model registry)
    only names the model type in the report. Nothing is raised for a failed check: call
    :func:`raise_for_failures` after the report is saved.
    """
    import torch  # defers torch

    folder = Path(folder)
    resolved = resolve_model(str(folder), registry=registry if registry is not None else {})
    tokenizer = load_tokenizer(resolved)
    model = _on_accelerator(load_model(resolved, torch_dtype=torch_dtype))
    model.eval()
    failures: list[dict] = []
    warnings: list[str] = []
    report: dict = {
        "ok": False,
        "failures": failures,
        "warnings": warnings,
        "artifact": {
            "folder": str(folder), "gguf_file": resolved.gguf_file, "model_type": resolved.model_type,
            "quant_method": "gguf" if resolved.gguf_file else quantization_method(resolved.path),
            "model_class": type(model).__name__, "dtype": str(getattr(model, "dtype", "")).replace("torch.", ""),
            "device": str(_device(model)),
        },
    }
    try:
        report["template"] = template_parity(tokenizer, reference, template, folder, failures)
        gguf_fields = None
        if resolved.gguf_file:
            gguf_fields = read_gguf_fields(Path(resolved.path) / resolved.gguf_file,
                                           ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"))
        report["stop_tokens"] = stop_token_parity(template, model.generation_config.eos_token_id, gguf_fields,
                                                  folder, failures)
        stats = LogitStats()
        replies, ppl = _artifact_outputs(model, tokenizer, reference, template, max_new_tokens, stats)
        report["logits"] = stats.result(failures, warnings, folder)
        report["replies"] = reply_parity(tokenizer, reference, replies, max_new_tokens)
        report["perplexity"] = perplexity_entry(reference, ppl)
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    report["ok"] = not failures
    report.update(_headline(report))
    return report


def _headline(report: dict) -> dict:
    """The flat numbers a model card's parity table shows (``swiftkit.exporters.model_card``)."""
    checks = {f["check"] for f in report["failures"]}
    logits, replies = report["logits"], report["replies"]
    return {
        "template_ok": "template" not in checks, "stop_tokens_ok": "stop_tokens" not in checks,
        "top1_agreement": logits.get("top1_agreement"), "max_logit_diff": logits.get("max_abs_diff"),
        "mean_logit_diff": logits.get("mean_abs_diff"), "greedy_match": f"{replies['equal']}/{replies['total']}",
    }


def raise_for_failures(report: dict) -> None:
    """Raise :class:`ParityError` with the first failure of ``report`` (and how many more) when it has any."""
    failures = report.get("failures") or []
    if failures:
        more = f" (and {len(failures) - 1} more problem(s) in the parity report)" if len(failures) > 1 else ""
        raise ParityError(failures[0]["message"] + more)
