"""Where each assistant reply sits in a rendered conversation, learned from the template itself.

Nothing here knows a model's format. For assistant turn ``i`` the template renders the history
``messages[:i]`` with the generation prompt (``P``) and the conversation up to the reply
``messages[:i+1]`` (``F``); the reply is ``F[len(P):]``, found at ``len(P)`` in the full rendering
when the template renders history the same way it renders the last turn. Templates that rewrite
history (dropping old reasoning, closing the conversation with an extra token) are handled by
locating the reply text, or its end-of-turn marker, in the full rendering instead.
"""

from __future__ import annotations

from bisect import bisect_left

from swiftkit.templates.errors import TemplateError


def render(tokenizer, messages: list[dict], generation_prompt: bool = False, tools=None,
           chat_kwargs: dict | None = None) -> str:
    """The conversation as text, rendered by the tokenizer's chat template (``tools`` as its tools,
    ``chat_kwargs`` as extra template variables such as ``enable_thinking``)."""
    return tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt, **(chat_kwargs or {})
    )


def input_ids_of(encoding) -> list[int]:
    """``input_ids`` from what ``apply_chat_template(tokenize=True)`` returns (dict or list)."""
    if hasattr(encoding, "keys"):
        encoding = encoding["input_ids"]
    return list(encoding)


class TokenizedText:
    """``text`` tokenized once, plus a way to find which tokens start inside a character span."""

    def __init__(self, tokenizer, text: str):
        self.tokenizer = tokenizer
        self.text = text
        try:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            self.ids = list(enc["input_ids"])
            self.starts: list[int] | None = [start for start, _ in enc["offset_mapping"]]
        except (NotImplementedError, ValueError, TypeError, KeyError):
            # Tokenizers without offsets (pure-Python ones): boundaries are found by tokenizing
            # prefixes of the text, see ``_boundary``.
            self.ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            self.starts = None

    def token_range(self, start: int, end: int) -> tuple[int, int]:
        """Indices ``[i, j)`` of the tokens whose first character lies in ``text[start:end]``."""
        if self.starts is not None:
            return bisect_left(self.starts, start), bisect_left(self.starts, end)
        return self._boundary(start), self._boundary(end)

    def _boundary(self, pos: int) -> int:
        prefix = list(self.tokenizer(self.text[:pos], add_special_tokens=False)["input_ids"])
        if self.ids[: len(prefix)] != prefix:
            raise TemplateError(
                "this tokenizer gives no character offsets and merges tokens across a reply "
                "boundary, so the reply tokens cannot be located; use a fast tokenizer"
            )
        return len(prefix)


def _strip_trailing_space(text: str, start: int, end: int) -> int:
    """``end`` moved left past whitespace: the separator after an end-of-turn token gets no loss."""
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _end_marker(reply: str, content: str) -> str:
    """What the template writes right after the reply content (e.g. ``<|im_end|>``), or ''."""
    core = content.strip()
    if not core:
        return ""
    # The whole content, else its last word (templates may reformat what comes before it).
    for piece in (core, core.split()[-1]):
        at = reply.rfind(piece)
        if at >= 0:
            tail = reply[at + len(piece):].strip()
            return tail.split()[0] if tail else ""
    return ""


def reply_span(tokenizer, messages: list[dict], i: int, full: str, cursor: int,
               tools=None, chat_kwargs: dict | None = None) -> tuple[int, int]:
    """Character span ``[start, end)`` of assistant message ``i``'s reply in ``full``.

    The span holds the reply and its end-of-turn marker, not the whitespace after it. ``cursor`` is
    where the previous located reply ended; spans never go backwards. ``tools`` are the row's tool
    schemas and ``chat_kwargs`` the template variables, rendered the same way for every prefix. Errors do not name
    the message: the caller
    knows its index in the row.
    """
    if i == 0:
        raise TemplateError(
            "a reply with nothing before it; a conversation needs a system or user message "
            "before the first assistant reply"
        )
    prompt = render(tokenizer, messages[:i], generation_prompt=True, tools=tools, chat_kwargs=chat_kwargs)
    upto = render(tokenizer, messages[: i + 1], tools=tools, chat_kwargs=chat_kwargs)
    if not upto.startswith(prompt):
        raise TemplateError(
            "the chat template's generation prompt is not how it starts this reply, so training "
            "on it would not match inference; pick another --template"
        )
    reply = upto[len(prompt):]
    # 1. History rendered exactly as the last turn: the reply sits right after the prompt.
    if len(prompt) >= cursor and full.startswith(upto):
        return len(prompt), _strip_trailing_space(full, len(prompt), len(upto))
    # 2. Something before the reply is rendered differently: find the reply text itself.
    at = full.find(reply, cursor) if reply else -1
    if at >= 0:
        return at, _strip_trailing_space(full, at, at + len(reply))
    # 3. The reply itself is rendered differently in history (e.g. reasoning dropped): it starts
    #    after the prompt and ends at the first end-of-turn marker the template writes after it.
    marker = _end_marker(reply, messages[i].get("content") or "")
    if marker and len(prompt) >= cursor and full.startswith(prompt):
        end = full.find(marker, len(prompt))
        if end >= 0:
            return len(prompt), end + len(marker)
    raise TemplateError(
        "the chat template renders this reply differently inside the "
        "full conversation than at the end of it, and its text could not be located; "
        "use --loss_scale last_round or pick another --template"
    )
