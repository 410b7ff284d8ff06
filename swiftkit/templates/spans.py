"""Where each assistant reply sits in a rendered conversation, learned from the template itself.

Nothing here knows a model's format. For assistant turn ``i`` the template renders the history
``messages[:i]`` with the generation prompt (``P``) and the conversation up to the reply
``messages[:i+1]`` (``F``); the reply is ``F[len(P):]``, found at ``len(P)`` in the full rendering
when the template renders history the same way it renders the last turn. Templates that rewrite
history (dropping old reasoning, closing the conversation with an extra token) are handled by
locating the reply text, or its end-of-turn marker, in the full rendering instead.

Those two renderings per reply cost more than tokenizing the conversation. Most templates write every
reply the same way, so :func:`learn_frame` learns once per template, from probe conversations labelled
as above, the text around a reply (:class:`ReplyFrame`); :func:`frame_spans` then finds every reply
of a conversation in its one full rendering with string searches alone.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate
from operator import itemgetter
from typing import NamedTuple

from swiftkit.templates.errors import TemplateError


def render(tokenizer, messages: list[dict], generation_prompt: bool = False, tools=None,
           chat_kwargs: dict | None = None) -> str:
    """The conversation as text, rendered by the tokenizer's chat template (``tools`` as its tools,
    ``chat_kwargs`` as extra template variables such as ``enable_thinking``)."""
    return tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt, **(chat_kwargs or {})
    )


def render_many(tokenizer, conversations: list[list[dict]], chat_kwargs: dict | None = None) -> list[str]:
    """Each conversation rendered as :func:`render` renders it (no tools, no generation prompt), in
    one call: the chat template renders every conversation of a batch on its own."""
    return tokenizer.apply_chat_template(
        conversations, tokenize=False, add_generation_prompt=False, **(chat_kwargs or {})
    )


_PLAIN_KEYS = frozenset(("role", "content"))


def is_plain(messages: list[dict]) -> bool:
    """Whether every message holds only a ``role`` and a ``content`` string: what a chat template sees
    of them is then exactly these dicts."""
    return all(m.keys() <= _PLAIN_KEYS and type(m.get("content")) is str and type(m.get("role")) is str
               for m in messages)


class PlainRenderer:
    """Conversations of plain messages (:func:`is_plain`) rendered by the chat template as
    :func:`render_many` renders them, minus ``apply_chat_template``'s per-message copying and
    conversion (which leaves such messages unchanged and costs about a third of the rendering).

    The template is compiled by transformers (its sandboxed environment and its cache) and given the
    variables ``apply_chat_template`` gives it: the tokenizer's special tokens and ``chat_kwargs``.
    The caller checks it once against :func:`render_many` before trusting it (:meth:`agrees`).
    """

    def __init__(self, tokenizer, chat_kwargs: dict | None = None):
        from transformers.utils import chat_template_utils  # defers transformers

        if not callable(getattr(chat_template_utils, "_compile_jinja_template", None)):
            raise TemplateError("this transformers version compiles chat templates differently")
        self.tokenizer = tokenizer
        self.chat_kwargs = dict(chat_kwargs or {})

    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        from transformers.utils.chat_template_utils import _compile_jinja_template  # defers transformers

        tok = self.tokenizer
        variables = {**tok.special_tokens_map, **self.chat_kwargs}
        # Compiled per call (transformers caches it by source), so this object stays picklable.
        render_one = _compile_jinja_template(tok.get_chat_template()).render
        return [render_one(messages=msgs, tools=None, documents=None, add_generation_prompt=False, **variables)
                for msgs in conversations]

    def agrees(self, conversations: list[list[dict]]) -> bool | None:
        """Whether this renders ``conversations`` (plain) as :func:`render_many` does: None when
        :func:`render_many` fails on them (nothing learned), False when only this fails or they differ."""
        try:
            expected = render_many(self.tokenizer, conversations, self.chat_kwargs)
        except Exception:  # noqa: BLE001 - e.g. a row the template refuses; ask again on other rows
            return None
        try:
            return self(conversations) == expected
        except Exception:  # noqa: BLE001 - failing where apply_chat_template does not: not this path
            return False


def input_ids_of(encoding) -> list[int]:
    """``input_ids`` from what ``apply_chat_template(tokenize=True)`` returns (dict or list)."""
    if hasattr(encoding, "keys"):
        encoding = encoding["input_ids"]
    return list(encoding)


def byte_lengths(tokenizer) -> list[int] | None:
    """Each token's length in bytes (indexed by id) for a fast byte-level BPE tokenizer whose tokens
    cover exactly their bytes of the text: no normalizer, no offset trimming after tokenizing, no added
    token that takes in the spaces around it. None for any other tokenizer.

    Then the tokens' offsets follow from the ids alone (see :meth:`TokenizedText.many`), and the
    tokenizer can skip tracking them, which is about a quarter of its time.
    """
    import json  # defers json

    backend = getattr(tokenizer, "_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or backend is None:
        return None
    try:
        spec = json.loads(backend.to_str())
    except Exception:  # noqa: BLE001 - a backend that cannot describe itself: offsets are tracked
        return None
    model, pre, post = spec.get("model") or {}, spec.get("pre_tokenizer") or {}, spec.get("post_processor") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    processors = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    if (model.get("type") != "BPE" or model.get("byte_fallback") or spec.get("normalizer") is not None
            or (spec.get("decoder") or {}).get("type") != "ByteLevel"
            or not any(step.get("type") == "ByteLevel" for step in steps)
            or any(p.get("type") in ("ByteLevel", "RobertaProcessing") and p.get("trim_offsets", True)
                   for p in processors)):
        return None
    added = backend.get_added_tokens_decoder()
    if any(token.lstrip or token.rstrip for token in added.values()):
        return None
    vocab = backend.get_vocab(with_added_tokens=False)
    lengths = [0] * (max([*vocab.values(), *added, -1]) + 1)
    for piece, i in vocab.items():  # byte-level pieces spell one character per byte
        lengths[i] = len(piece)
    for i, token in added.items():
        lengths[i] = len(token.content.encode("utf-8"))
    return lengths


class TokenizedText:
    """``text`` tokenized once, plus a way to find which tokens start inside a character span.

    A fast tokenizer's encoding answers where a character is (``char_to_token``), so only the few
    tokens around a span boundary are looked at: asking the tokenizer for every token's offsets
    costs about a quarter of the tokenization itself. Byte-level tokenizers skip the encoding: the
    tokens' byte offsets are the running sum of their byte lengths (``starts``, see :meth:`many`).
    """

    def __init__(self, tokenizer, text: str, encoded: tuple | None = None):
        self.tokenizer = tokenizer
        self.text = text
        self.encoding = None  # the tokenizers-library encoding of a fast tokenizer
        self.offsets: list | None = None  # (start, end) of every token, where no encoding is kept
        self.starts: list[int] | None = None  # byte offset of every token's start, then the text's length
        if encoded is not None:  # ids and encoding from a batch, or ids and byte starts, see ``many``
            self.ids, found = encoded
            if isinstance(found, list):
                self.starts = found
            else:
                self.encoding = found
            return
        if getattr(tokenizer, "is_fast", False):
            enc = tokenizer(text, add_special_tokens=False)
            self.ids, self.encoding = list(enc["input_ids"]), (enc.encodings or [None])[0]
            if self.encoding is not None:
                return
        try:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            self.ids = list(enc["input_ids"])
            self.offsets = list(enc["offset_mapping"])
        except (NotImplementedError, ValueError, TypeError, KeyError):
            # Tokenizers without offsets (pure-Python ones): boundaries are found by tokenizing
            # prefixes of the text, see ``_boundary``.
            self.ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            self.offsets = None

    @classmethod
    def many(cls, tokenizer, texts: list[str], lengths: list[int] | None = None) -> list[TokenizedText]:
        """Each of ``texts`` tokenized as ``TokenizedText(tokenizer, text)`` does, in one call to a fast
        tokenizer (which spreads a batch over its threads). With ``lengths`` (:func:`byte_lengths` of
        the tokenizer) the ids come from the tokenizer's call that tracks no offsets, and each text's
        token starts from the lengths; a text whose lengths do not add up to its bytes is tokenized
        again with offsets."""
        if not texts:
            return []
        backend = getattr(tokenizer, "_tokenizer", None)
        if lengths is not None and _untouched_by_call(tokenizer, backend):
            out = []
            for text, ids in zip(texts, _fast_ids(backend, texts)):
                starts = list(accumulate(map(lengths.__getitem__, ids), initial=0))
                size = len(text) if text.isascii() else len(text.encode("utf-8"))
                out.append(cls(tokenizer, text, (ids, starts)) if starts[-1] == size else cls(tokenizer, text))
            return out
        if getattr(tokenizer, "is_fast", False):
            enc = tokenizer(texts, add_special_tokens=False)
            encodings = enc.encodings
            if encodings is not None and len(encodings) == len(texts):
                return [cls(tokenizer, text, pair) for text, pair in zip(texts, zip(enc["input_ids"], encodings))]
        return [cls(tokenizer, text) for text in texts]

    def token_range(self, start: int, end: int) -> tuple[int, int]:
        """Indices ``[i, j)`` of the tokens whose first character lies in ``text[start:end]``."""
        return self._first_at(start), self._first_at(end)

    def _first_at(self, pos: int) -> int:
        """How many tokens start before character ``pos`` (token starts never decrease)."""
        if self.starts is not None:  # a token starting inside a character starts before the next one
            at = pos if self.text.isascii() else len(self.text[:pos].encode("utf-8"))
            return bisect_left(self.starts, at, 0, len(self.ids))
        if self.encoding is not None:
            try:
                return self._walk(pos)
            except TypeError:  # a token without offsets: read them all
                self.offsets, self.encoding = list(self.encoding.offsets), None
        if self.offsets is not None:
            return bisect_left(self.offsets, pos, key=_token_start)
        return self._boundary(pos)

    def _walk(self, pos: int) -> int:
        enc, n = self.encoding, len(self.ids)
        t = n if pos >= len(self.text) else enc.char_to_token(pos)
        if t is None:  # no token covers that character (a normalizer dropped it)
            raise TypeError(pos)
        while t > 0 and enc.token_to_chars(t - 1)[0] >= pos:
            t -= 1
        while t < n and enc.token_to_chars(t)[0] < pos:
            t += 1
        return t

    def _boundary(self, pos: int) -> int:
        prefix = list(self.tokenizer(self.text[:pos], add_special_tokens=False)["input_ids"])
        if self.ids[: len(prefix)] != prefix:
            raise TemplateError(
                "this tokenizer gives no character offsets and merges tokens across a reply "
                "boundary, so the reply tokens cannot be located; use a fast tokenizer"
            )
        return len(prefix)


def _untouched_by_call(tokenizer, backend) -> bool:
    """Whether calling ``backend`` directly tokenizes as ``tokenizer(texts, add_special_tokens=False)``
    does: that call first turns truncation and padding off and sets how special tokens are split."""
    return (backend is not None and backend.truncation is None and backend.padding is None
            and backend.encode_special_tokens == bool(getattr(tokenizer, "split_special_tokens", False)))


def _fast_ids(backend, texts: list[str]) -> list[list[int]]:
    """Token ids of ``texts`` from the tokenizer's batch call without offsets (where it has one)."""
    encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
    return [e.ids for e in encode(texts, add_special_tokens=False)]


_token_start = itemgetter(0)  # a token's first character, from its (start, end) offsets


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


class ReplyFrame(NamedTuple):
    """How a template writes each assistant reply: its generation prompt ``prompt`` (may be empty),
    then the reply span, which is ``head`` + the message content (as given, or stripped when the
    template trims it) + ``tail`` (the end-of-turn marker, never blank)."""

    prompt: str
    head: str
    tail: str


def _replies(messages: list[dict]) -> list[int]:
    return [i for i, m in enumerate(messages) if m["role"] == "assistant"]


def frame_spans(frame: ReplyFrame, full: str, messages: list[dict]) -> dict[int, tuple[int, int]] | None:
    """``{index: span}`` of every assistant message, found in ``full`` (the conversation rendered once)
    as ``frame`` writes it; None when a reply is not there in that form (then :func:`reply_span` is
    the way). Replies are searched in order, each after the previous one; where the content as given
    and the stripped content both occur, the earlier occurrence is the reply."""
    spans, cursor = {}, 0
    for i in _replies(messages):
        content = messages[i]["content"]
        found = None
        for text in dict.fromkeys((content, content.strip())):
            needle = frame.prompt + frame.head + text + frame.tail
            at = full.find(needle, cursor)
            if at >= 0 and (found is None or at < found[0] - len(frame.prompt)):
                found = (at + len(frame.prompt), at + len(needle))
        if found is None:
            return None
        spans[i] = found
        cursor = found[1]
    return spans


def learn_frame(tokenizer, conversations: list[list[dict]], chat_kwargs: dict | None = None) -> ReplyFrame | None:
    """The one frame every reply of ``conversations`` (prepared messages, at least one reply each) is
    written in, learned from the spans :func:`reply_span` gives; None when the replies are written in
    different ways, the tail is blank, or the frame does not find those very spans again.

    The first conversation teaches the frame (its reply contents must have no surrounding
    whitespace); all of them check it. A conversation the template refuses to render is skipped.
    """
    frames, labelled = set(), []
    for k, msgs in enumerate(conversations):
        try:
            full = render(tokenizer, msgs, chat_kwargs=chat_kwargs)
        except Exception:  # noqa: BLE001 - a template may refuse a probe (e.g. no system role)
            continue
        spans, cursor = {}, 0
        for i in _replies(msgs):
            start, end = reply_span(tokenizer, msgs, i, full, cursor, None, chat_kwargs)
            spans[i], cursor = (start, end), end
            if k:
                continue
            prompt = render(tokenizer, msgs[:i], True, None, chat_kwargs)
            history = render(tokenizer, msgs[:i], False, None, chat_kwargs)
            gen = prompt[len(history):]
            content = msgs[i]["content"]
            at = full.find(content, start, end)
            if (not prompt.startswith(history) or start < len(gen) or full[start - len(gen):start] != gen
                    or at < 0 or content != content.strip()):
                return None
            frames.add(ReplyFrame(gen, full[start:at], full[at + len(content):end]))
        labelled.append((full, msgs, spans))
    if len(frames) != 1:
        return None
    frame = frames.pop()
    if not frame.tail.strip():
        return None
    if any(frame_spans(frame, full, msgs) != spans for full, msgs, spans in labelled):
        return None
    return frame
