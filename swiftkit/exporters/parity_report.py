"""The comparisons of a parity report and its printed summary (see :mod:`swiftkit.exporters.parity`).

Each ``*_parity`` function returns a JSON-able dict and appends what must stop the export to ``failures``
(dicts with a one-line ``message``); a large logit error is a warning (quantization is expected to cost
something), not a failure. Nothing here loads a model; the callers hand in what they computed.
"""

from __future__ import annotations

import math
from pathlib import Path

from swiftkit.core.errors import SwiftkitError
from swiftkit.templates.spans import input_ids_of

# Top-1 agreement below this is reported as a warning: the artifact mostly predicts other tokens than the source.
TOP1_WARNING = 0.5


class ParityError(SwiftkitError):
    """An exported artifact renders conversations or stops generating differently from the trained model."""


def with_system(messages: list[dict], system: str | None) -> list[dict]:
    """``messages`` as training encoded them: ``system`` (--system) first when they have no system message."""
    if system is not None and messages[0]["role"] != "system":
        return [{"role": "system", "content": system}, *messages]
    return messages


def render_ids(tokenizer, messages: list[dict], generation_prompt: bool, chat_kwargs: dict) -> list[int]:
    """``tokenizer.apply_chat_template(messages, tokenize=True)``'s ids."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                        **chat_kwargs)
    return [int(i) for i in input_ids_of(out)]


def token_text(tokenizer, ids: list[int], position: int) -> str:
    """The text of token ``position`` of ``ids`` (special tokens shown), or ``(end)`` past the end."""
    if position >= len(ids):
        return "(end)"
    return tokenizer.decode([ids[position]], skip_special_tokens=False)


def first_difference(expected: list[int], got: list[int]) -> int | None:
    """The first position where the two id lists differ (a shorter list differs at its end); None if equal."""
    for position, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return position
    return None if len(expected) == len(got) else min(len(expected), len(got))


def _compare(index: int, form: str, expected, got, ref_tok, art_tok, folder, failures) -> dict:
    position = first_difference(expected, got)
    entry = {"equal": position is None, "expected_tokens": len(expected), "tokens": len(got)}
    if position is not None:
        want, have = token_text(ref_tok, expected, position), token_text(art_tok, got, position)
        entry["first_difference"] = {"position": position, "expected": want, "got": have}
        failures.append({
            "check": "template", "conversation": index, "form": form, "position": position, "expected": want,
            "got": have,
            "message": f"parity: the chat template of {str(folder)!r} renders parity conversation {index} ({form}) "
                       f"differently from training: first difference at token {position}: expected {want!r}, got "
                       f"{have!r}; export with the tokenizer and chat template the model was trained with",
        })
    return entry


def template_parity(tokenizer, reference, template, folder, failures: list) -> list[dict]:
    """For each parity conversation: the artifact's ``apply_chat_template`` ids against the training encoding,
    whole and as a generation prompt. A conversation without a system message is rendered with --system
    inserted, as training encoded it; whether the artifact alone (without it) gives the same ids is reported,
    not failed."""
    ref_tok, kwargs = template.tokenizer, dict(template.chat_kwargs)
    out = []
    for index, conv in enumerate(reference.conversations):
        entry = {"conversation": index, "system_message": conv.messages[0]["role"] == "system"}
        if conv.ids is None:
            entry["skipped"] = conv.note
            out.append(entry)
            continue
        msgs = with_system(conv.messages, template.system)
        try:
            whole = render_ids(tokenizer, msgs, False, kwargs)
            prompt = render_ids(tokenizer, with_system(conv.prompt_messages, template.system), True, kwargs)
        except Exception as exc:  # noqa: BLE001 - a chat template that raises on this conversation is the finding
            message = (f"parity: the chat template of {str(folder)!r} fails on parity conversation {index}: "
                       f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            failures.append({"check": "template", "conversation": index, "form": "render", "message": message})
            entry["error"] = message
            out.append(entry)
            continue
        entry["ids"] = _compare(index, "whole conversation", conv.ids, whole, ref_tok, tokenizer, folder, failures)
        entry["generation_prompt"] = _compare(index, "generation prompt", conv.prompt_ids, prompt, ref_tok,
                                              tokenizer, folder, failures)
        if msgs is not conv.messages:
            try:
                alone = render_ids(tokenizer, conv.messages, False, kwargs)
            except Exception:  # noqa: BLE001 - a template that needs a system message: reported as different
                alone = None
            entry["without_system_equal"] = alone == conv.ids
            entry["note"] = ("no system message: training inserted --system, so it is compared with --system "
                             "inserted; " + ("the artifact's template adds the same by itself" if alone == conv.ids
                                            else "served without it, the artifact renders a different prompt: pass "
                                                 "the system message when serving (not a failure)"))
        out.append(entry)
    return out


def modelfile_stops(path: Path) -> list[str]:
    """The values of the ``PARAMETER stop`` lines of an Ollama Modelfile (quotes removed)."""
    stops, in_block = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.count('"""') % 2 == 1:
            in_block = not in_block
            continue
        parts = line.strip().split(None, 2)
        if in_block or len(parts) != 3 or parts[0].upper() != "PARAMETER" or parts[1].lower() != "stop":
            continue
        value = parts[2].strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        stops.append(value)
    return stops


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def stop_token_parity(template, generation_eos, gguf_fields: dict | None, folder: Path, failures: list) -> dict:
    """Whether the artifact stops where the template's replies end: every stop token in its generation
    config's eos ids (for a GGUF file: its eos id is one of the stop tokens) and in a Modelfile's stop lines."""
    stop_ids = list(template.stop_token_ids)
    texts = [template.tokenizer.convert_ids_to_tokens(i) for i in stop_ids]
    entry = {"stop_token_ids": stop_ids, "stop_tokens": texts}
    if gguf_fields is not None:
        eos = gguf_fields.get("tokenizer.ggml.eos_token_id")
        entry.update(kind="gguf", gguf_eos_token_id=eos,
                     gguf_eot_token_id=gguf_fields.get("tokenizer.ggml.eot_token_id"))
        entry["ok"] = eos in stop_ids
        if not entry["ok"]:
            failures.append({"check": "stop_tokens", "message": (
                f"parity: the GGUF file in {str(folder)!r} ends replies with token id {eos}, which is not one of the "
                f"template's stop tokens {dict(zip(texts, stop_ids))}; write its eos as the end-of-turn token")})
    else:
        eos_ids = _as_list(generation_eos)
        missing = [t for t, i in zip(texts, stop_ids) if i not in eos_ids]
        entry.update(kind="generation_config", eos_token_id=eos_ids, missing=missing, ok=not missing)
        if missing:
            failures.append({"check": "stop_tokens", "message": (
                f"parity: {str(folder / 'generation_config.json')!r} eos_token_id {eos_ids} lacks the stop token(s) "
                f"{', '.join(repr(t) for t in missing)} that end the template's replies; generation would run past "
                "the end of a reply: add their ids to eos_token_id")})
    modelfile = folder / "Modelfile"
    if modelfile.is_file():
        stops = modelfile_stops(modelfile)
        missing = [t for t in texts if t not in stops]
        entry["modelfile"] = {"stops": stops, "missing": missing}
        entry["ok"] = entry["ok"] and not missing
        if missing:
            failures.append({"check": "stop_tokens", "message": (
                f"parity: {str(modelfile)!r} has no PARAMETER stop line for {', '.join(repr(t) for t in missing)}; "
                "Ollama would run past the end of a reply: add one per stop token")})
    return entry


class LogitStats:
    """Running totals of the absolute logit differences and top-1 agreement over positions."""

    def __init__(self):
        self.total, self.count, self.max, self.agree, self.positions = 0.0, 0, 0.0, 0, 0
        self.per_conversation: list[dict] = []
        self.vocab_note: str | None = None

    def add(self, index: int, got, expected) -> None:
        vocab = min(got.shape[-1], expected.shape[-1])
        if got.shape[-1] != expected.shape[-1]:
            self.vocab_note = (f"vocabularies differ ({expected.shape[-1]} -> {got.shape[-1]}): the first {vocab} "
                               "logits compared")
        got, expected = got[:, :vocab], expected[:, :vocab]
        diff = (got - expected).abs()
        agree = int((got.argmax(-1) == expected.argmax(-1)).sum())
        conv_max = float(diff.max())
        self.total += float(diff.sum())
        self.count += diff.numel()
        self.max = conv_max if math.isnan(conv_max) or conv_max > self.max else self.max
        self.agree += agree
        self.positions += got.shape[0]
        self.per_conversation.append({"conversation": index, "positions": got.shape[0],
                                      "max_abs_diff": _num(conv_max), "top1_agreement": agree / got.shape[0]})

    def result(self, failures: list, warnings: list, folder: Path) -> dict:
        if not self.positions:
            return {"positions": 0}
        mean = self.total / self.count
        out = {"positions": self.positions, "mean_abs_diff": _num(mean), "max_abs_diff": _num(self.max),
               "top1_agreement": self.agree / self.positions, "per_conversation": self.per_conversation}
        if self.vocab_note:
            out["note"] = self.vocab_note
        if not (math.isfinite(mean) and math.isfinite(self.max)):
            failures.append({"check": "logits", "message": (
                f"parity: the model in {str(folder)!r} gives non-finite logits (NaN or inf) on the parity "
                "conversations: the export is broken; try another --quant_method or bit width")})
        elif out["top1_agreement"] < TOP1_WARNING:
            warnings.append(f"the artifact's most likely next token agrees with the source's at only "
                            f"{out['top1_agreement']:.0%} of {self.positions} positions (max |logit diff| "
                            f"{self.max:.3g}): check its replies before serving it")
        return out


def _num(value: float) -> float | None:
    """A JSON-safe float (None for NaN and inf)."""
    return float(value) if math.isfinite(value) else None


def reply_parity(tokenizer, reference, artifact_replies: list[list[int]], max_new_tokens: int) -> dict:
    """The artifact's greedy replies against the source's, compared over the shorter token budget."""
    budget = min(max_new_tokens, reference.max_new_tokens)
    rows = []
    for prompt, source, text, got in zip(reference.prompts, reference.replies, reference.reply_texts,
                                         artifact_replies):
        same = first_difference(source[:budget], got[:budget])
        rows.append({
            "prompt": prompt[-1]["content"],
            "source": text,
            "artifact": tokenizer.decode(got, skip_special_tokens=True),
            "equal": same is None,
            "same_prefix_tokens": min(len(source), len(got), budget) if same is None else same,
        })
    return {"max_new_tokens": budget, "equal": sum(r["equal"] for r in rows), "total": len(rows), "replies": rows}


def perplexity_entry(reference, artifact_ppl: float | None) -> dict | None:
    if reference.perplexity is None:
        return None
    out = {"tokens": reference.ppl_tokens, "source": _num(reference.perplexity),
           "artifact": _num(artifact_ppl) if artifact_ppl is not None else None}
    if out["source"] and out["artifact"] is not None:
        out["relative_change"] = out["artifact"] / out["source"] - 1
    return out


def summary_lines(report: dict) -> list[str]:
    """A few lines for people: verdict, template, stop tokens, logits, replies, perplexity."""
    art = report.get("artifact", {})
    where = art.get("folder", "")
    if art.get("gguf_file"):
        where += f" ({art['gguf_file']})"
    if report.get("ok"):
        lines = [f"parity of {where}: ok"]
    else:
        failures = report.get("failures", [])
        lines = [f"parity of {where}: FAILED ({len(failures)} problem{'s' if len(failures) != 1 else ''})"]
        lines += [f"  {f['message']}" for f in failures[:3]]
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    convs = report.get("template", [])
    checked = [c for c in convs if "ids" in c]
    same = sum(c["ids"]["equal"] and c["generation_prompt"]["equal"] for c in checked)
    line = f"template: {same}/{len(checked)} conversations render token for token as in training"
    if len(checked) < len(convs):
        line += f" ({len(convs) - len(checked)} skipped or failed to render)"
    lines.append(line)
    if any(c.get("without_system_equal") is False for c in checked):
        lines.append("  note: served without a system message, the artifact does not add training's --system")
    stop = report.get("stop_tokens") or {}
    if stop:
        kind = "GGUF eos" if stop.get("kind") == "gguf" else "generation_config eos"
        lines.append(f"stop tokens {', '.join(stop.get('stop_tokens', []))}: "
                     f"{'covered by ' + kind if stop.get('ok') else 'NOT covered'}"
                     + (" and the Modelfile" if "modelfile" in stop and stop.get("ok") else ""))
    logits = report.get("logits") or {}
    if logits.get("positions"):
        mean, top = logits["mean_abs_diff"], logits["max_abs_diff"]
        fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
        lines.append(f"logits over {logits['positions']} positions: mean |diff| {fmt(mean)}, max {fmt(top)}, "
                     f"top-1 agreement {logits['top1_agreement']:.1%}")
    replies = report.get("replies") or {}
    if replies.get("total"):
        lines.append(f"greedy replies ({replies['max_new_tokens']} tokens): {replies['equal']}/{replies['total']} "
                     "identical to the source")
    ppl = report.get("perplexity")
    if ppl and ppl.get("artifact") is not None and ppl.get("source") is not None:
        lines.append(f"perplexity over {ppl['tokens']} held-aside tokens: {ppl['source']:.4g} -> {ppl['artifact']:.4g}"
                     f" ({ppl.get('relative_change', 0):+.2%})")
    return lines
