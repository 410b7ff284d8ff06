"""Canonical alignment rows -> the token-id columns each TRL trainer takes, encoded by swiftkit's template.

The prompt part is always what :meth:`~swiftkit.templates.template.Template.encode_prompt` gives at
serving time (one render of the whole conversation, the reply's span found by the template), so a
model aligned here is served with the same prompt tokens it was trained on. TRL's own tokenization
is skipped (see :mod:`swiftkit.train.rlhf_trainers`).

Columns by method:

* dpo: ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (replies without the prompt);
* orpo / simpo / cpo: the same plus ``prompt``/``chosen``/``rejected`` text, which TRL's trainers
  require to exist (they are not re-tokenized);
* kto: ``prompt_ids``, ``completion_ids``, ``label``;
* rm: ``chosen_ids``, ``rejected_ids`` (prompt + reply, scored at the last token);
* ppo: ``input_ids`` (the prompt);
* grpo: ``prompt`` (the conversation as the template sees it, system prompt included) plus every
  extra column, which reach the reward functions.
"""

from __future__ import annotations

from swiftkit.data.encode import all_too_long
from swiftkit.data.length import check_length
from swiftkit.data.media import has_media
from swiftkit.templates import SequenceTooLong, TemplateError

PAIR_METHODS = ("dpo", "orpo", "simpo", "cpo")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _rejected_row(row: dict) -> dict:
    """The conversation of a preference row that ends with the rejected reply."""
    rejected_reply = {"role": "assistant", "content": row["rejected_response"]}
    return {**row, "messages": row["messages"][:-1] + [rejected_reply]}


def encode_pair(template, row: dict) -> dict:
    """Prompt ids and the chosen / rejected reply ids of one preference row."""
    chosen_prompt, chosen = template.encode_completion(row)
    rejected_prompt, rejected = template.encode_completion(_rejected_row(row))
    # The prompt renders identically before either reply; a tokenizer that merges tokens across the
    # reply boundary would make them differ, and then the shared part is the prompt.
    n = _common_prefix(chosen_prompt, rejected_prompt)
    return {"prompt_ids": chosen_prompt[:n], "chosen_ids": chosen_prompt[n:] + chosen,
            "rejected_ids": rejected_prompt[n:] + rejected}


def _encode_kto(template, row: dict) -> dict:
    prompt, completion = template.encode_completion(row)
    return {"prompt_ids": prompt, "completion_ids": completion, "label": bool(row["label"])}


def _encode_rm(template, row: dict) -> dict:
    pair = encode_pair(template, row)
    return {"chosen_ids": pair["prompt_ids"] + pair["chosen_ids"],
            "rejected_ids": pair["prompt_ids"] + pair["rejected_ids"]}


def _encode_prompt(template, row: dict) -> dict:
    return {"input_ids": template.encode_prompt(row["messages"], row.get("tools"))}


def _with_text(template, row: dict) -> dict:
    enc = encode_pair(template, row)
    decode = template.tokenizer.decode
    return {**enc, "prompt": decode(enc["prompt_ids"]), "chosen": decode(enc["chosen_ids"]),
            "rejected": decode(enc["rejected_ids"])}


def grpo_prompt(template, row: dict) -> dict:
    """A GRPO row: the prompt messages as the chat template renders them, plus the extra columns."""
    msgs, _ = template._prepare(row["messages"], "")
    out = {k: v for k, v in row.items() if k not in ("messages", "_origin", "label")}
    out["prompt"] = msgs
    return out


ENCODERS = {
    "dpo": encode_pair, "orpo": _with_text, "simpo": _with_text, "cpo": _with_text, "kto": _encode_kto,
    "rm": _encode_rm, "ppo": _encode_prompt,
}


def encode_row(method: str, template, row: dict) -> dict:
    """One row encoded for ``method``; raises ``SequenceTooLong`` when it does not fit --max_length
    (a PPO prompt must leave room for the reply) and ``TemplateError`` when it cannot be rendered."""
    if method == "grpo":
        template.encode_prompt(row["messages"], row.get("tools"))  # generation starts from this prompt
        return grpo_prompt(template, row)
    if has_media(row):  # a preference row with images: the encoder of a vision-language model pairs it
        if method != "dpo" or not hasattr(template, "encode_pair"):
            raise TemplateError(f"{row.get('_origin', '?')}: rows with images train with --rlhf_type dpo (and sft); "
                                f"{method} takes text rows only")
        return template.encode_pair(row)
    check_length(template, row)  # a conversation far over --max_length is not tokenized at all
    if "rejected_response" in row and method in (*PAIR_METHODS, "rm"):
        check_length(template, _rejected_row(row))
    enc = ENCODERS[method](template, row)
    if method == "ppo" and template.max_length is not None and len(enc["input_ids"]) >= template.max_length:
        raise SequenceTooLong(f"{row.get('_origin', '?')}: a prompt of {len(enc['input_ids'])} tokens leaves no "
                              f"room for a reply within max_length {template.max_length}")
    return enc


def encode_for(method: str, rows: list[dict], template, what: str = "--dataset") -> tuple[list[dict], int]:
    """Encoded rows for ``method`` and how many were skipped as longer than --max_length."""
    out, skipped = [], 0
    for row in rows:
        try:
            out.append(encode_row(method, template, row))
        except SequenceTooLong:
            skipped += 1
    if rows and not out:
        raise all_too_long(what, len(rows), template)
    return out, skipped


def real_tokens(method: str, features: list[dict]) -> int:
    """Tokens the model runs on for a batch (padding excluded), for tokens/s figures."""
    if method in PAIR_METHODS:
        return sum(2 * len(f["prompt_ids"]) + len(f["chosen_ids"]) + len(f["rejected_ids"]) for f in features)
    if method == "kto":  # each reply, and the mismatched reply of the KL term when there is one
        return sum((2 if "KL_completion_ids" in f else 1) * len(f["prompt_ids"]) + len(f["completion_ids"])
                   + len(f.get("KL_completion_ids", ())) for f in features)
    if method == "rm":
        return sum(len(f["chosen_ids"]) + len(f["rejected_ids"]) for f in features)
    return 0
