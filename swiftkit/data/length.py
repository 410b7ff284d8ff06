"""Rows that cannot fit ``--max_length``, found without tokenizing them.

Tokenizing costs memory per token inside the tokenizers library (measured ~0.7 GB for 1.4M tokens,
a 5 MB row, with SmolLM2's tokenizer; a 50 MB row took 9.7 GB and two minutes in ``data lint``),
and a row over ``--max_length`` under ``--truncation_strategy delete`` is dropped anyway. No token
covers more characters than the longest entry of the tokenizer's vocabulary, so a conversation
whose rendered text is longer than ``max_length`` times that length cannot fit: it is dropped as
too long without being tokenized (:func:`check_length`).

The bound holds only for tokenizers that keep every character of the text: fast tokenizers whose
normalizer can at most compose Unicode (NFC/NFKC and kin, lower-casing, prepending, replacing a
string by a non-empty one), whose pre-tokenizer drops nothing (byte-level, metaspace, splits that
keep the text) and whose model cannot fold a run of unknown characters into one token. For any
other tokenizer (slow ones, WordPiece, BERT normalizers) every row is tokenized as before.
"""

from __future__ import annotations

import contextlib
import json
import weakref

from swiftkit.templates import SequenceTooLong

# The rendering used for the bound leaves out tool schemas and tool calls and may render a default
# system prompt the real conversation replaces: allow for that much text of the template's own.
SLACK_CHARS = 4096
_UNICODE_FORMS = ("NFC", "NFD", "NFKC", "NFKD")
_COMPOSE_SHRINK = 4  # NFC/NFKC join at most about four code points into one character
_KEEP_PRE_TOKENIZERS = ("ByteLevel", "Metaspace", "Digits", "Split", "Punctuation")

_SPANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> characters per token, or 0


def _normalizer_shrink(state: dict | None) -> float | None:
    """How many characters of text may become one after normalization, or None when unbounded."""
    if state is None:
        return 1.0
    kind = state.get("type")
    if kind in _UNICODE_FORMS:
        return float(_COMPOSE_SHRINK)
    if kind in ("Lowercase", "Prepend"):
        return 1.0
    if kind == "Replace":
        pattern, content = state.get("pattern", {}), state.get("content", "")
        if "String" in pattern and content:
            return max(1.0, len(pattern["String"]) / len(content))
        return None
    if kind == "Sequence":
        shrink = 1.0
        for part in state.get("normalizers", []):
            factor = _normalizer_shrink(part)
            if factor is None:
                return None
            shrink *= factor
        return shrink
    return None


def _keeps_text(state: dict | None) -> bool:
    """Whether a pre-tokenizer hands every character of its input on."""
    if state is None:
        return True
    kind = state.get("type")
    if kind == "Sequence":
        return all(_keeps_text(part) for part in state.get("pretokenizers", []))
    return kind in _KEEP_PRE_TOKENIZERS and state.get("behavior") != "Removed"


def _state(component) -> dict | None:
    return None if component is None else json.loads(component.__getstate__())


def chars_per_token(tokenizer) -> float:
    """The most characters of text one token can stand for (longest vocabulary entry, times what
    normalization may fold into one character); 0 when this tokenizer gives no such bound."""
    with contextlib.suppress(KeyError, TypeError):
        return _SPANS[tokenizer]
    span = _measure(tokenizer)
    with contextlib.suppress(TypeError):  # not weak-referenceable: measured again next time
        _SPANS[tokenizer] = span
    return span


def _measure(tokenizer) -> float:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return 0.0
    try:
        shrink = _normalizer_shrink(_state(backend.normalizer))
        pre = _state(backend.pre_tokenizer)
        model = backend.model
        kind = type(model).__name__
        byte_level = "ByteLevel" in json.dumps(pre)
        if shrink is None or not _keeps_text(pre):
            return 0.0
        if kind == "BPE":
            if getattr(model, "fuse_unk", False) and not getattr(model, "byte_fallback", False) and not byte_level:
                return 0.0
        elif not (kind == "Unigram" and getattr(model, "byte_fallback", False)):
            return 0.0  # WordPiece / WordLevel map a whole unknown word to one token
        longest = max((len(piece) for piece in backend.get_vocab(with_added_tokens=True)), default=0)
    except Exception:  # a tokenizers release with other internals: no bound, tokenize as before
        return 0.0
    return float(longest) * shrink if longest else 0.0


def tokens_at_least(tokenizer, chars: int) -> int:
    """A lower bound on the tokens of a text of ``chars`` characters (0 when this tokenizer gives
    no bound)."""
    span = chars_per_token(tokenizer)
    return int(chars / span) if span and chars > 0 else 0


def _content_chars(row: dict) -> int:
    if "text" in row and "messages" not in row:
        return len(row["text"]) if isinstance(row["text"], str) else 0
    return sum(len(m["content"]) for m in row.get("messages") or ()
               if isinstance(m, dict) and isinstance(m.get("content"), str))


def _rendered_chars(template, row: dict) -> int | None:
    """Characters of the conversation as the chat template renders it without tools (None when it
    cannot be rendered that way: then the row is tokenized and the template reports it)."""
    if "messages" not in row:
        return len(row["text"])
    messages = [{"role": m.get("role"), "content": "" if m.get("tool_calls") else m.get("content")}
                for m in row["messages"]]
    try:
        text = template.tokenizer.apply_chat_template(messages, chat_template=template.chat_template,
                                                      tokenize=False, **template.chat_kwargs)
    except Exception:  # the chat template refuses the simplified conversation (jinja raise_exception)
        return None
    return len(text) if isinstance(text, str) else None


def fewest_tokens(template, row: dict) -> int | None:
    """A lower bound on the tokens ``row`` encodes to when that bound is over the template's
    ``max_length``; None otherwise (also when no bound can be had without tokenizing)."""
    limit = template.max_length
    if limit is None or _content_chars(row) <= limit:
        return None
    if tokens_at_least(template.tokenizer, _content_chars(row) - SLACK_CHARS) <= limit:
        return None
    chars = _rendered_chars(template, row)
    if chars is None:
        return None
    bound = tokens_at_least(template.tokenizer, chars - SLACK_CHARS)
    return bound if bound > limit else None


def check_length(template, row: dict) -> None:
    """Raise ``SequenceTooLong`` (as encoding would) for a row that cannot fit ``max_length`` under
    ``--truncation_strategy delete``, found without tokenizing it; do nothing otherwise."""
    if template.truncation_strategy != "delete":
        return
    bound = fewest_tokens(template, row)
    if bound is not None:
        where = f"{row['_origin']}: " if "_origin" in row else ""
        raise SequenceTooLong(f"{where}at least {bound:,} tokens (counted without tokenizing) is over "
                              f"max_length {template.max_length}")
