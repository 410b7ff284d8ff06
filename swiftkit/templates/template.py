"""The Template: rows -> token ids + labels, and prompts for generation, with train/serve parity.

``encode`` renders a whole conversation with the tokenizer's chat template and tokenizes that text
once, so its ``input_ids`` equal ``tokenizer.apply_chat_template(messages, tokenize=True)``. The
labels come from reply spans that the template itself reveals (see :mod:`swiftkit.templates.spans`),
never from per-model rules. Where the template writes every reply in one frame (learned once from
probe conversations), the spans are found in that same rendering: one render and one tokenization per
conversation; other rows and templates render the history before each reply to find it, and the
first ``SPANS_CHECKED_ROWS`` rows are labelled both ways and compared. ``encode_many`` tokenizes
the conversations of many rows in one call. ``encode_prompt`` is ``apply_chat_template`` with the
generation prompt.
A row's ``tools`` and its messages' ``tool_calls`` reach the template as in ``apply_chat_template``
(see :mod:`swiftkit.templates.tools`); a template that drops them is an error.
"""

from __future__ import annotations

import hashlib
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass

from swiftkit.templates.errors import SequenceTooLong, TemplateError
from swiftkit.templates.spans import (
    PlainRenderer,
    ReplyFrame,
    TokenizedText,
    byte_lengths,
    frame_spans,
    input_ids_of,
    is_plain,
    learn_frame,
    render,
    render_many,
    reply_span,
)
from swiftkit.templates.tools import (
    arguments_form,
    check_template_uses_tools,
    check_tools,
    decode_tool_calls,
    with_arguments_form,
)

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant", "tool")
_ROLE_CONTENT_LOSS = frozenset(("role", "content", "loss"))
LOSS_SCALES = ("default", "last_round", "all")
TRUNCATION_STRATEGIES = ("delete", "left", "right")
OWN_TEMPLATE = "model"  # Template.name when the tokenizer's own chat template is used
# Rows encoded with a full apply_chat_template parity check before only rows that can differ are.
PARITY_CHECKED_ROWS = 64
# Plain conversations rendered both by apply_chat_template and by the compiled template before the
# latter renders them alone (the two can differ only through the template's variables).
PLAIN_RENDER_CHECKED_ROWS = 8
# Rows whose reply tokens, found from token byte lengths, are also found from the offsets the tokenizer
# tracks and compared; a difference switches to the tracked offsets for good.
OFFSETS_CHECKED_ROWS = 64
# Rows whose one-render reply spans are also found by rendering each reply's history and compared; a
# difference switches the template to the per-reply renderings for good.
SPANS_CHECKED_ROWS = 64
_UNLEARNED = object()  # Template._frame, ._renderer and ._lengths before they are learned
# Probe conversations the reply frame is learned from (the first) and checked on (all of them).
FRAME_PROBES = (
    (("user", "Hi there, who are you?"), ("assistant", "I am a model that answers questions."),
     ("user", "What is two plus two?"), ("assistant", "Two plus two is four.")),
    (("system", "Answer in one sentence."), ("user", "Name a colour."), ("assistant", "Blue is a colour.")),
    (("user", "Say something."), ("assistant", "  Something, with spaces around it. \n"),
     ("user", "Again."), ("assistant", "\nAnd once more.")),
)


def _where(row) -> str:
    origin = row.get("_origin") if isinstance(row, dict) else None
    return f"{origin}: " if origin else ""


class Template:
    """A chat template bound to a tokenizer and the encoding options of one run."""

    def __init__(self, tokenizer, name: str, chat_template: str, *, system: str | None = None,
                 max_length: int | None = None, truncation_strategy: str = "delete",
                 loss_scale: str = "default", stop_words: list[str] | tuple[str, ...] = (),
                 chat_kwargs: dict | None = None):
        if truncation_strategy not in TRUNCATION_STRATEGIES:
            raise TemplateError(
                f"truncation_strategy {truncation_strategy!r} is not one of "
                f"{', '.join(TRUNCATION_STRATEGIES)}"
            )
        if loss_scale not in LOSS_SCALES:
            raise TemplateError(f"loss_scale {loss_scale!r} is not one of {', '.join(LOSS_SCALES)}")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 1):
            raise TemplateError(f"max_length must be a positive integer or None, got {max_length!r}")
        if system is not None and not isinstance(system, str):
            raise TemplateError(f"system must be a string, got {type(system).__name__}")
        self.tokenizer = tokenizer
        self.name = name
        self.chat_template = chat_template
        self.system = system
        self.max_length = max_length
        self.truncation_strategy = truncation_strategy
        self.loss_scale = loss_scale
        self.stop_words = list(stop_words)
        self.chat_kwargs = dict(chat_kwargs or {})  # extra template variables (--enable_thinking), every render
        self._arguments_form: str | None = None  # found on the first tool call, see _calls_for_template
        self._parity_checks = 0
        self._span_checks = 0
        self._control_texts: list[str] | None = None
        self._control_heads: list[str] = []  # the first characters of the control texts
        self._frame: ReplyFrame | None | object = _UNLEARNED  # see _reply_frame
        self._renderer: PlainRenderer | None | object = _UNLEARNED  # see _plain_renderer
        self._lengths: list[int] | None | object = _UNLEARNED  # byte_lengths of the tokenizer, see _tokenize
        self._offset_checks = 0
        self.fingerprint = self._fingerprint()
        self.stop_token_ids = self._stop_token_ids()

    def __repr__(self) -> str:
        return f"Template(name={self.name!r}, loss_scale={self.loss_scale!r}, max_length={self.max_length})"

    # -- public ----------------------------------------------------------------------------------

    def encode(self, row: dict) -> dict:
        """``{"input_ids", "labels"}`` for a ``{"messages": [...], "tools"?: [...]}`` or ``{"text": ...}`` row."""
        staged = self._stage(row)
        return self._finish(staged, self._tokenize([staged])[0])

    def encode_many(self, rows: list) -> list[dict | None]:
        """:meth:`encode` of each row, in order, with None for a row over ``max_length`` (strategy delete).

        The conversations without tools are rendered in one chat-template call and all are tokenized
        in one tokenizer call; ids and labels are those :meth:`encode` gives. Any other error is the
        one :meth:`encode` raises on the first row it fails on, raised after the rows before it are
        encoded.
        """
        staged, failure = [], None
        for row in rows:
            try:
                staged.append(self._stage(row, rendered=False))
            except Exception as exc:  # noqa: BLE001 - raised below, once the rows before it are done
                failure = exc
                break
        stop = self._render_staged(staged)
        if stop is not None:
            staged, failure = staged[:stop[0]], stop[1]
        results = []
        for item, text in zip(staged, self._tokenize(staged)):
            try:
                results.append(self._finish(item, text))
            except SequenceTooLong:
                results.append(None)
        if failure is not None:
            raise failure
        return results

    def _stage(self, row, rendered: bool = True) -> _Staged:
        """A row validated and, for a conversation, rendered unless ``rendered`` is False: everything
        before tokenizing."""
        where = _where(row)
        if not isinstance(row, dict):
            raise TemplateError(f"a row must be a dict with 'messages' or 'text', got {type(row).__name__}")
        if row.get("images") or row.get("videos") or row.get("audios"):
            raise TemplateError(f"{where}the row has images, videos or audio: it is encoded with the model's processor "
                                "(a multimodal model), not by the text template alone")
        if "messages" in row:
            tools = check_tools(row.get("tools"), where)
            messages = row["messages"]
            msgs, flags = self._prepare(messages, where)
            shift = len(msgs) - len(messages)  # 1 when the system prompt was inserted
            full = self._render(msgs, where, shift, tools) if rendered else None
            plain = tools is None and is_plain(msgs)
            return _Staged(where, msgs=msgs, flags=flags, shift=shift, tools=tools, full=full, plain=plain,
                           spells=self._spells_control_text(msgs, tools, plain))
        if "text" in row:
            ids, labels = self._encode_text(row["text"], where)
            return _Staged(where, ids=ids, labels=labels)
        keys = ", ".join(sorted(map(str, row))) or "none"
        raise TemplateError(f"{where}row has neither 'messages' nor 'text' (its keys: {keys})")

    def _render_staged(self, staged: list[_Staged]) -> tuple[int, Exception] | None:
        """Render the conversations of ``staged``: those of plain messages with the compiled template
        (:class:`PlainRenderer`, once checked), the others without tools in one chat-template call,
        the rest (and all of them when a call fails) one by one. The index and error of the first row
        that fails, or None."""
        plain = [s for s in staged if s.msgs is not None and s.tools is None and not _has_tool_calls(s.msgs)]
        simple = [s for s in plain if s.plain]
        renderer = self._plain_renderer([s.msgs for s in simple[:PLAIN_RENDER_CHECKED_ROWS]]) if simple else None
        if renderer is not None:
            try:
                texts = renderer([s.msgs for s in simple])
            except Exception:  # noqa: BLE001 - rendered below, where the failing row is named
                texts = []
            for s, text in zip(simple, texts):
                s.full = text
        plain = [s for s in plain if s.full is None]
        if len(plain) > 1:
            try:
                texts = render_many(self.tokenizer, [s.msgs for s in plain], self.chat_kwargs)
            except Exception:  # noqa: BLE001 - rendered one by one below, where the failing row is named
                texts = None
            if isinstance(texts, list) and len(texts) == len(plain):
                for s, text in zip(plain, texts):
                    s.full = text
        for k, s in enumerate(staged):
            if s.msgs is not None and s.full is None:
                try:
                    s.full = self._render(s.msgs, s.where, s.shift, s.tools)
                except Exception as exc:  # noqa: BLE001 - the caller raises it after the rows before it
                    return k, exc
        return None

    def _plain_renderer(self, sample: list[list[dict]]) -> PlainRenderer | None:
        """The renderer of plain conversations, adopted once it renders ``sample`` (plain conversations)
        as ``apply_chat_template`` does; None where it does not or cannot (then for good)."""
        if self._renderer is _UNLEARNED:
            try:
                renderer = PlainRenderer(self.tokenizer, self.chat_kwargs)
            except Exception:  # noqa: BLE001 - another transformers version: apply_chat_template renders
                self._renderer = None
                return None
            verdict = renderer.agrees(sample)
            if verdict is None:  # apply_chat_template itself failed on the sample: ask on the next rows
                return None
            self._renderer = renderer if verdict else None
        return self._renderer

    def _tokenize(self, staged: list[_Staged]) -> list[TokenizedText | None]:
        """The rendered conversations of ``staged`` tokenized in one call (None for text rows)."""
        if self._lengths is _UNLEARNED:
            self._lengths = byte_lengths(self.tokenizer)
        texts = iter(TokenizedText.many(self.tokenizer, [s.full for s in staged if s.full is not None], self._lengths))
        return [next(texts) if s.full is not None else None for s in staged]

    def _finish(self, s: _Staged, text: TokenizedText | None) -> dict:
        if text is None:
            return self._truncate(s.ids, s.labels, s.where)
        ids, labels = self._label(s.msgs, s.flags, s.where, s.shift, self.loss_scale, s.tools, s.full, text,
                                  s.spells)
        if labels.count(IGNORE_INDEX) == len(labels):
            raise TemplateError(
                f"{s.where}nothing to train on: the conversation has no assistant reply that gets "
                f"loss (loss_scale {self.loss_scale!r}, 'loss': false on a reply excludes it)"
            )
        return self._truncate(ids, labels, s.where)

    def encode_with_text(self, row: dict) -> tuple[dict, str | None]:
        """:meth:`encode` and the rendered conversation it tokenized (None for a text row): the text a
        multimodal processor expands with the images' tokens."""
        staged = self._stage(row)
        return self._finish(staged, self._tokenize([staged])[0]), staged.full

    def encode_prompt(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        """Prompt ids for generating the next assistant reply (``add_generation_prompt=True``),
        with ``tools`` (function schemas) offered to the model."""
        return input_ids_of(self._prompt(messages, tools, tokenize=True))

    def prompt_text(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """The text :meth:`encode_prompt` tokenizes."""
        return self._prompt(messages, tools, tokenize=False)

    def _prompt(self, messages: list[dict], tools, tokenize: bool):
        tools = check_tools(tools, "")
        msgs, _ = self._prepare(messages, "")
        if msgs[-1]["role"] not in ("user", "tool"):
            raise TemplateError(
                f"message {len(messages) - 1}: a generation prompt must end with a user or tool "
                f"message, not {msgs[-1]['role']!r}"
            )
        tok, kw = self.tokenizer, self.chat_kwargs
        with _template_errors(""):
            if tools is not None or _has_tool_calls(msgs):
                check_template_uses_tools(
                    lambda m, t: render(tok, m, True, t, kw), msgs, tools, render(tok, msgs, True, tools, kw),
                    "", len(msgs) - len(messages),
                )
            return tok.apply_chat_template(msgs, tools=tools, tokenize=tokenize, add_generation_prompt=True, **kw)

    def encode_completion(self, row: dict) -> tuple[list[int], list[int]]:
        """``(prompt ids, reply ids)`` of a conversation whose last message is the reply being scored
        (preference and KTO training).

        The conversation is rendered and tokenized once, as :meth:`encode` does; the reply is the
        span of the final assistant message up to its end-of-turn token, and the prompt is every
        token before it, so the prompt ids are what :meth:`encode_prompt` gives at serving time.
        ``max_length`` applies to prompt + reply: ``delete`` raises, ``left`` cuts the prompt's
        start, ``right`` the reply's end.
        """
        where = _where(row)
        messages = row["messages"]
        tools = check_tools(row.get("tools"), where)
        msgs, _ = self._prepare(messages, where)
        if msgs[-1]["role"] != "assistant":
            raise TemplateError(f"{where}the conversation must end with the assistant reply being scored")
        shift = len(msgs) - len(messages)
        ids, labels = self._labelled(msgs, [None] * len(msgs), where, shift, "last_round", tools)
        marked = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        prompt, reply = ids[:marked[0]], ids[marked[0]:marked[-1] + 1]
        limit = self.max_length
        if limit is not None and len(prompt) + len(reply) > limit:
            if self.truncation_strategy == "delete":
                raise SequenceTooLong(f"{where}{len(prompt) + len(reply)} tokens is over max_length {limit}")
            if self.truncation_strategy == "left" and len(reply) < limit:
                prompt = prompt[len(prompt) + len(reply) - limit:]
            else:
                reply = reply[:max(1, limit - len(prompt))]
                prompt = prompt[len(prompt) + len(reply) - limit:] if len(prompt) + len(reply) > limit else prompt
        return list(prompt), list(reply)

    def decode(self, ids) -> str:
        """Text of ``ids`` without special tokens (negative ids such as -100 are dropped)."""
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        return self.tokenizer.decode([i for i in ids if i >= 0], skip_special_tokens=True)

    # -- conversations ---------------------------------------------------------------------------

    def _prepare(self, messages, where: str) -> tuple[list[dict], list[bool | None]]:
        """Validated messages without the ``loss`` key (system prompt inserted) and their loss flags.

        Keys set to None are dropped (as ``apply_chat_template`` does); the content of an assistant
        message with ``tool_calls`` may be None or "" and becomes "".
        """
        if not isinstance(messages, list) or not messages:
            raise TemplateError(f"{where}'messages' must be a non-empty list of messages")
        msgs, flags = [], []
        for k, message in enumerate(messages):
            if type(message) is dict and message.keys() <= _ROLE_CONTENT_LOSS:  # the common case, checked at once
                role, content, loss = message.get("role"), message.get("content"), message.get("loss")
                if (type(role) is str and role in ROLES and type(content) is str
                        and (loss is None or loss is False or (loss is True and role == "assistant"))):
                    msg = dict(message)
                    msg.pop("loss", None)
                    msgs.append(msg)
                    flags.append(loss)
                    continue
            if not isinstance(message, dict):
                raise TemplateError(f"{where}message {k}: must be a dict, got {type(message).__name__}")
            role, content, loss = message.get("role"), message.get("content"), message.get("loss")
            if not isinstance(role, str) or role not in ROLES:
                raise TemplateError(f"{where}message {k}: role {role!r} is not one of {', '.join(ROLES)}")
            calls = message.get("tool_calls")
            if calls is not None:
                if role != "assistant":
                    raise TemplateError(
                        f"{where}message {k} ({role}): 'tool_calls' belong on assistant messages"
                    )
                calls = decode_tool_calls(calls, f"{where}message {k} ({role})")
            if content is None and calls:
                content = ""
            if not isinstance(content, str):
                raise TemplateError(
                    f"{where}message {k} ({role}): content must be a string, got {type(content).__name__}"
                    + (" (null only on an assistant message with tool_calls)" if content is None else "")
                )
            for key in ("tool_call_id", "name"):
                if message.get(key) is not None and not isinstance(message[key], str):
                    raise TemplateError(
                        f"{where}message {k} ({role}): {key!r} must be a string, "
                        f"got {type(message[key]).__name__}"
                    )
            if loss is not None and not isinstance(loss, bool):
                raise TemplateError(
                    f"{where}message {k} ({role}): 'loss' must be true or false, got {loss!r}"
                )
            if loss and role != "assistant":
                raise TemplateError(
                    f"{where}message {k} ({role}): 'loss': true applies only to assistant messages"
                )
            msg = {key: value for key, value in message.items()
                   if key not in ("loss", "tool_calls") and value is not None}
            msg["content"] = content
            if calls:
                msg["tool_calls"] = self._calls_for_template(calls)
            msgs.append(msg)
            flags.append(loss)
        if self.system is not None and msgs[0]["role"] != "system":
            msgs.insert(0, {"role": "system", "content": self.system})
            flags.insert(0, None)
        return msgs, flags

    def _calls_for_template(self, calls: list[dict]) -> list[dict]:
        """Decoded ``calls`` with arguments in the form this chat template renders correctly."""
        if self._arguments_form is None:
            tok = self.tokenizer
            self._arguments_form = arguments_form(lambda m: render(tok, m, chat_kwargs=self.chat_kwargs))
        return with_arguments_form(calls, self._arguments_form)

    @staticmethod
    def _trained_turns(msgs: list[dict], flags: list, loss_scale: str) -> tuple[list[int], list[int]]:
        """Indices of replies that get loss and, under ``all``, replies excluded from it."""
        replies = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        if loss_scale == "all":
            return [], [i for i in replies if flags[i] is False]
        if loss_scale == "last_round":
            chosen = {i for i in replies if flags[i] is True}
            if replies and flags[replies[-1]] is not False:
                chosen.add(replies[-1])
            return sorted(chosen), []
        return [i for i in replies if flags[i] is not False], []

    def _labelled(self, msgs: list[dict], flags: list, where: str, shift: int, loss_scale: str,
                  tools: list[dict] | None = None):
        """Token ids of the conversation and its labels (before truncation)."""
        full = self._render(msgs, where, shift, tools)
        return self._label(msgs, flags, where, shift, loss_scale, tools, full, TokenizedText(self.tokenizer, full),
                           self._spells_control_text(msgs, tools))

    def _render(self, msgs: list[dict], where: str, shift: int, tools) -> str:
        """The conversation rendered once (its tools checked to reach the template)."""
        tok, kw = self.tokenizer, self.chat_kwargs
        with _template_errors(where):
            full = render(tok, msgs, tools=tools, chat_kwargs=kw)
            if tools is not None or _has_tool_calls(msgs):
                check_template_uses_tools(
                    lambda m, t: render(tok, m, tools=t, chat_kwargs=kw), msgs, tools, full, where, shift
                )
        return full

    def _label(self, msgs: list[dict], flags: list, where: str, shift: int, loss_scale: str, tools,
               full: str, text: TokenizedText, spells: bool) -> tuple[list[int], list[int]]:
        """Ids of ``text`` (the tokenized ``full``), checked against apply_chat_template where they can
        differ, and their labels."""
        tok, kw = self.tokenizer, self.chat_kwargs
        with _template_errors(where):
            reference = text.ids
            if self._needs_parity_check(spells):
                reference = input_ids_of(tok.apply_chat_template(msgs, tools=tools, tokenize=True, **kw))
        if reference is not text.ids and text.ids != reference:
            raise TemplateError(
                f"{where}tokenizing the rendered conversation gives other ids than "
                "apply_chat_template; this tokenizer cannot be trained with exact parity"
            )
        trained, excluded = self._trained_turns(msgs, flags, loss_scale)
        turns = sorted(trained + excluded)
        spans = self._one_render_spans(msgs, full, tools, spells) if turns else None
        if spans is None or self._span_checks < SPANS_CHECKED_ROWS:
            exact = self._rendered_spans(msgs, turns, full, tools, where, shift)
            if spans is not None:
                self._span_checks += 1
                if any(spans[i] != exact[i] for i in turns):
                    self._frame = None
            spans = exact
        if text.starts is not None and self._offset_checks < OFFSETS_CHECKED_ROWS:
            self._offset_checks += 1
            exact = TokenizedText(self.tokenizer, full)
            if any(exact.token_range(*spans[i]) != text.token_range(*spans[i]) for i in turns):
                self._lengths, text = None, exact  # token offsets are tracked from now on
        ids = text.ids
        labels = list(ids) if loss_scale == "all" else [IGNORE_INDEX] * len(ids)
        for i in turns:
            a, b = text.token_range(*spans[i])
            labels[a:b] = ids[a:b] if i in trained else [IGNORE_INDEX] * (b - a)
        return ids, labels

    def _rendered_spans(self, msgs: list[dict], turns: list[int], full: str, tools, where: str,
                        shift: int) -> dict[int, tuple[int, int]]:
        """Character spans of the replies ``turns`` in ``full``, each found by rendering its history."""
        spans, cursor = {}, 0
        for i in turns:
            try:
                with _template_errors(""):
                    spans[i] = reply_span(self.tokenizer, msgs, i, full, cursor, tools, self.chat_kwargs)
            except TemplateError as exc:
                raise TemplateError(f"{where}message {i - shift} (assistant): {exc}") from exc
            cursor = spans[i][1]
        return spans

    def _one_render_spans(self, msgs: list[dict], full: str, tools, spells: bool) -> dict | None:
        """Spans of every reply found in ``full`` alone, or None where only the per-reply renderings
        can be trusted: rows with tools, tool calls or tool results, rows spelling a special token,
        a reply with nothing before it, templates without a learned frame, replies not in the frame."""
        if spells or tools is not None or msgs[0]["role"] not in ("system", "user"):
            return None
        if any(m["role"] == "tool" or "tool_calls" in m for m in msgs):
            return None
        frame = self._reply_frame()
        return frame_spans(frame, full, msgs) if frame is not None else None

    def _reply_frame(self) -> ReplyFrame | None:
        """The frame this template writes every reply in (learned on first use), or None."""
        if self._frame is _UNLEARNED:
            self._frame = self._learn_reply_frame()
        return self._frame

    def _learn_reply_frame(self) -> ReplyFrame | None:
        probes = [self._prepare([{"role": role, "content": content} for role, content in probe], "")[0]
                  for probe in FRAME_PROBES]
        try:
            with _template_errors(""):
                frame = learn_frame(self.tokenizer, probes, self.chat_kwargs)
        except Exception:  # noqa: BLE001 - a template that fails on a probe keeps the per-reply renderings
            return None
        # Row text spelling no special token can then never be mistaken for a reply's frame.
        controls = self._controls()
        if frame is None or not any(t in frame.prompt + frame.head or t in frame.tail for t in controls):
            return None
        return frame

    def _controls(self) -> list[str]:
        """Special and added token texts of the tokenizer."""
        if self._control_texts is None:
            tok = self.tokenizer
            added = [t.content for t in getattr(tok, "added_tokens_decoder", {}).values()]
            self._control_texts = sorted({t for t in [*tok.all_special_tokens, *added] if t})
            self._control_heads = sorted({t[0] for t in self._control_texts})
        return self._control_texts

    def _spells_control_text(self, msgs: list[dict], tools, plain: bool = False) -> bool:
        """Whether the row's text spells a special or added token: its roles and contents when the
        messages are ``plain`` (:func:`is_plain`, no tools), else its JSON."""
        if plain:
            text = "\0".join([value for m in msgs for value in (m["role"], m["content"])])
        else:
            text = json.dumps([msgs, tools], ensure_ascii=False)
        controls = self._controls()
        # Most rows hold no character a control text starts with (e.g. '<'): one scan per such character.
        if not any(c in text for c in self._control_heads):
            return False
        return any(t in text for t in controls)

    def _needs_parity_check(self, spells: bool) -> bool:
        """Whether this row's ids must be compared with ``apply_chat_template(tokenize=True)``.

        Both sides render with the same chat template and tokenize the text with the same call, so
        they can differ only through the template itself (checked on the first
        ``PARITY_CHECKED_ROWS`` rows) or through row text that spells a special or added token
        (``spells``), which ``apply_chat_template`` sanitises (checked on every such row). Skipping the
        rest removes a render and a tokenization per row (measured ~25% of encoding time).
        """
        if self._parity_checks < PARITY_CHECKED_ROWS:
            self._parity_checks += 1
            return True
        return spells

    def _encode_text(self, text, where: str) -> tuple[list[int], list[int]]:
        if not isinstance(text, str) or not text.strip():
            raise TemplateError(f"{where}'text' must be a non-empty string")
        tok = self.tokenizer
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        if tok.bos_token_id is not None:
            ids.insert(0, tok.bos_token_id)
        if tok.eos_token_id is not None:
            ids.append(tok.eos_token_id)
        return ids, list(ids)

    def _truncate(self, ids: list[int], labels: list[int], where: str) -> dict:
        limit = self.max_length
        if limit is not None and len(ids) > limit:
            if self.truncation_strategy == "delete":
                raise SequenceTooLong(f"{where}{len(ids)} tokens is over max_length {limit}")
            cut = slice(-limit, None) if self.truncation_strategy == "left" else slice(None, limit)
            ids, labels = ids[cut], labels[cut]
            if all(label == IGNORE_INDEX for label in labels):
                raise SequenceTooLong(
                    f"{where}{self.truncation_strategy} truncation to max_length {limit} leaves no "
                    "token with loss"
                )
        return {"input_ids": ids, "labels": labels}

    # -- identity --------------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        tok = self.tokenizer
        payload = {
            "chat_template": self.chat_template,
            "system": self.system,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        }
        if self.chat_kwargs:  # only then, so templates without them keep their fingerprints
            payload["chat_kwargs"] = self.chat_kwargs
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()

    def _stop_token_ids(self) -> list[int]:
        tok = self.tokenizer
        ids = [tok.eos_token_id] if tok.eos_token_id is not None else []
        for word in self.stop_words:
            pieces = list(tok(word, add_special_tokens=False)["input_ids"])
            if len(pieces) == 1:
                ids.append(pieces[0])
        end_of_turn = self._end_of_turn_id()
        if end_of_turn is not None:
            ids.append(end_of_turn)
        return list(dict.fromkeys(ids))

    def _end_of_turn_id(self) -> int | None:
        """The special token that closes a reply in this template (e.g. ``<|im_end|>`` when the eos
        is ``<|endoftext|>``), found by labelling a one-round probe conversation; None if unknown."""
        probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
        try:
            msgs, flags = self._prepare(probe, "")
            ids, labels = self._labelled(msgs, flags, "", 0, "last_round")
        except Exception:  # noqa: BLE001 - best effort: a template may reject the probe conversation
            return None
        trained = [t for t, label in zip(ids, labels) if label != IGNORE_INDEX]
        last = trained[-1] if trained else None
        tok = self.tokenizer
        special = set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {}))
        return last if last in special else None


@dataclass
class _Staged:
    """A row ready to tokenize: a rendered conversation (``full``), or a text row already encoded."""

    where: str
    msgs: list | None = None
    flags: list | None = None
    shift: int = 0
    tools: list | None = None
    full: str | None = None
    plain: bool = False  # messages of role and content strings only, no tools (is_plain)
    spells: bool = False
    ids: list | None = None
    labels: list | None = None


def _has_tool_calls(msgs: list[dict]) -> bool:
    return any(m.get("tool_calls") for m in msgs)


@contextmanager
def _template_errors(where: str):
    """Turn jinja errors raised by a chat template (e.g. ``raise_exception``) into TemplateError."""
    import jinja2  # defers jinja2

    try:
        yield
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{where}the chat template failed on this conversation: {exc}") from exc


def _own_chat_template(tokenizer) -> str | None:
    source = getattr(tokenizer, "chat_template", None)
    if not source:
        return None
    if isinstance(source, str):
        return source
    return tokenizer.get_chat_template()  # named templates: the default one


def thinking_kwargs(chat_template: str, enable_thinking: bool | None, name: str) -> dict:
    """The template variables for --enable_thinking: ``{"enable_thinking": value}`` when the chat template
    reads that variable; a template that does not is rendered as it is, with a note saying the flag is
    ignored (its replies have no thinking block to switch)."""
    if enable_thinking is None:
        return {}
    if "enable_thinking" in chat_template:
        return {"enable_thinking": enable_thinking}
    print(f"[swiftkit] --enable_thinking {str(enable_thinking).lower()}: the chat template "
          f"{'of the model' if name == OWN_TEMPLATE else repr(name)} does not read enable_thinking; ignored",
          file=sys.stderr)
    return {}


def get_template(tokenizer, template: str | None = None, *, system: str | None = None,
                 max_length: int | None = None, truncation_strategy: str = "delete",
                 loss_scale: str = "default", enable_thinking: bool | None = None, registry) -> Template:
    """The template for ``tokenizer``: its own chat template, or the registered one named ``template``.

    A registered template is also assigned to ``tokenizer.chat_template``, so the tokenizer saved
    after training carries the exact template the model was trained with. ``registry`` is the
    command's template registry (its plugins' templates included). ``enable_thinking`` (None: the
    template's default) is passed to every render of a template that reads it (:func:`thinking_kwargs`).
    """
    options = {"system": system, "max_length": max_length,
               "truncation_strategy": truncation_strategy, "loss_scale": loss_scale}
    if template is None:
        source = _own_chat_template(tokenizer)
        if source is None:
            names = ", ".join(registry) or "none"
            model = getattr(tokenizer, "name_or_path", "") or "this model"
            raise TemplateError(
                f"the tokenizer of {model} has no chat template; choose one with --template NAME "
                f"(registered templates: {names})"
            )
        return Template(tokenizer, OWN_TEMPLATE, source, **options,
                        chat_kwargs=thinking_kwargs(source, enable_thinking, OWN_TEMPLATE))
    try:
        entry = registry.get(template)
    except ValueError as exc:
        raise TemplateError(str(exc)) from exc
    tokenizer.chat_template = entry.chat_template
    return Template(tokenizer, entry.name, entry.chat_template, stop_words=entry.stop_words, **options,
                    chat_kwargs=thinking_kwargs(entry.chat_template, enable_thinking, entry.name))
