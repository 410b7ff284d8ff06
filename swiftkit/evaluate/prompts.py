"""How benchmark items become prompts: the question block, few-shot examples, plain text or chat turns.

Log-likelihood tasks need the prompt as text (``context``) and each option's text (``continuation``).
Plain text follows the layout of base-model harnesses (``Question: ...`` / ``Answer: B``, solved
examples separated by a blank line, the option after a space). With a chat template each solved example
is a user turn and an assistant turn, the question is the last user turn, and the option is scored as
the start of the assistant's reply (rendered by :meth:`EvalModel.render`), so a chat model is scored on
the prompt format it was trained on.
"""

from __future__ import annotations

from swiftkit.evaluate.layouts import LETTERS


def option_block(item: dict) -> str:
    """The question with its options listed as ``A. ...`` lines (letter style)."""
    lines = [str(item["question"]).strip()]
    lines += [f"{LETTERS[i]}. {str(option).strip()}" for i, option in enumerate(item["options"])]
    return "\n".join(lines)


def pick_shots(item: dict, pool: list[dict], k: int) -> list[dict]:
    """``k`` solved examples for ``item``: the first ones of its own subject in ``pool``, then any others;
    never the item itself."""
    if k <= 0:
        return []
    same = [x for x in pool if x["id"] != item["id"] and x.get("subject") == item.get("subject")]
    rest = [x for x in pool if x["id"] != item["id"] and x.get("subject") != item.get("subject")]
    return (same + rest)[:k]


def _subject_line(item: dict) -> str:
    subject = str(item.get("subject") or "").replace("_", " ").strip()
    return (f"The following are multiple choice questions (with answers) about {subject}.\n\n" if subject
            else "The following are multiple choice questions (with answers).\n\n")


def mc_requests(item: dict, shots: list[dict], model, chat: bool, raw_text: bool) -> list[tuple[str, str]]:
    """``(context, continuation)`` per option of a multiple-choice item.

    ``raw_text``: the prompt is the item's text itself, continued by the option (hellaswag), rather than
    ``Question: ...`` / ``Answer:``.
    """
    style = item["style"]
    if style == "partial":  # each option fills the blank; the rest of the sentence is what is scored
        head, _, tail = item["question"].partition("_")
        return [(head + option, " " + tail.strip()) for option in item["options"]]
    if style == "letter":
        def ask(x):
            return option_block(x) + "\nAnswer:"

        def answer(x):
            return LETTERS[x["gold"]]

        options = [LETTERS[i] for i in range(len(item["options"]))]
    else:
        def ask(x):
            return str(x["question"]).strip() if raw_text else f"Question: {str(x['question']).strip()}\nAnswer:"

        def answer(x):
            return str(x["options"][x["gold"]]).strip()

        options = [str(o).strip() for o in item["options"]]
    if chat:
        messages = []
        for shot in shots:
            messages += [{"role": "user", "content": ask(shot)}, {"role": "assistant", "content": answer(shot)}]
        first = _subject_line(item) if style == "letter" else ""
        if messages:
            messages[0]["content"] = first + messages[0]["content"]
            messages.append({"role": "user", "content": ask(item)})
        else:
            messages = [{"role": "user", "content": first + ask(item)}]
        context = model.render(messages)
        return [(context, option) for option in options]
    head = _subject_line(item) if style == "letter" else ""
    blocks = [f"{ask(shot)} {answer(shot)}" for shot in shots]
    context = head + "".join(b + "\n\n" for b in blocks) + ask(item)
    return [(context, " " + option) for option in options]


def generation_messages(item: dict, shots: list[dict], instruction: str | None, *, letter: bool = False) -> list[dict]:
    """Chat turns asking ``item``'s question after the solved ``shots`` (each a user and an assistant turn)."""
    def ask(x):
        body = option_block(x) if letter else str(x["question"]).strip()
        return f"{body}\n\n{instruction}" if instruction else body

    def solved(x):
        return LETTERS[x["gold"]] if letter else str(x["solution"]).strip()

    messages = []
    for shot in shots:
        messages += [{"role": "user", "content": ask(shot)}, {"role": "assistant", "content": solved(shot)}]
    return [*messages, {"role": "user", "content": ask(item)}]
