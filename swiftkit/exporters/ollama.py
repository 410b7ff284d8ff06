"""Writing an Ollama Modelfile beside a GGUF file, so ``ollama create NAME -f Modelfile`` serves the model with
its training chat template, system prompt, stop tokens and sampling parameters.

Ollama builds a prompt with a Go template over the request's messages (``.Messages``, each with ``.Role`` and
``.Content``); system messages stay among them, and the Modelfile's SYSTEM becomes the first message when a request
has none. The chat template is jinja, so instead of translating jinja the writer renders it on placeholder
conversations and reads off the strings it puts around each message: per role the text before and after the
content, the generation prompt, and the text before the first message with a system message first and without
one (a BOS, or a default system block such as SmolLM2's "You are a helpful AI assistant named SmolLM..."). The
TEMPLATE puts those strings around ``{{ .Content }}``; a conversation that ends with an assistant message leaves it
open, so that the model continues it. Before anything is written the pieces are reassembled for several probe
conversations and compared with the jinja rendering: a template whose turns depend on more than their role and
whether they come first (the system prompt folded into the first user turn, history rewritten per turn) is refused
with one line. Tool calls and tool results are not carried (no ``.Tools``); messages of other roles are skipped.

A BOS that the tokenizer adds by itself (GGUF ``add_bos_token``) is dropped from the front of the TEMPLATE, since
llama.cpp adds it too.

Modelfile values have no escape sequences: TEMPLATE and SYSTEM are written between triple quotes, stop strings
between double quotes, and a value the format cannot hold (one with a line ending in triple quotes, or a
non-printable character that Ollama's parser would drop) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swiftkit.core.errors import SwiftkitError
from swiftkit.exporters.gguf_vocab import adds_special_tokens


class ModelfileError(SwiftkitError):
    """A chat template, system prompt or stop string that an Ollama Modelfile cannot express."""


_S, _U1, _A1, _U2, _A2, _U3, _S2 = (f"SWIFTKIT{tag}MARK" for tag in ("SYS", "USRA", "ASTA", "USRB", "ASTB", "USRC",
                                                                      "SYSB"))


@dataclass
class TurnPieces:
    """The fixed strings of a chat template: what comes before the first message (``first_system`` when it is a
    system message, None if the template takes none; ``first_other`` otherwise), around each role's content,
    and the generation prompt. ``system_prefix`` is None when a later system message cannot be rendered."""

    first_system: str | None
    system_prefix: str | None
    system_suffix: str
    first_other: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str
    generation: str


def write_modelfile(folder: Path, gguf_name: str, template, generation_config=None,
                    context_length: int | None = None) -> Path:
    """Write ``folder/Modelfile`` for ``folder/gguf_name`` from a swiftkit Template (chat template, system
    prompt, stop tokens); ``generation_config`` gives temperature, top_p, top_k and repeat_penalty where set,
    ``context_length`` num_ctx."""
    pieces = turn_pieces(template)
    if template.system and pieces.first_system is None:
        raise ModelfileError("--to_ollama: the chat template takes no system message, so the --system prompt could "
                             "not be given to the model; export without --system")
    tokenizer = template.tokenizer
    if adds_special_tokens(tokenizer)[0] and tokenizer.bos_token:
        pieces = _without_leading(pieces, tokenizer.bos_token)
    lines = [f"# Ollama Modelfile for {gguf_name}: ollama create <name> -f Modelfile",
             f"FROM ./{gguf_name}",
             f"TEMPLATE {quote(go_template(pieces), 'the chat template', triple=True)}"]
    if template.system:
        lines.append(f"SYSTEM {quote(template.system, 'the system prompt', triple=True)}")
    for stop in stop_strings(template):
        lines.append(f"PARAMETER stop {quote(stop, 'a stop token')}")
    for key, value in _parameters(generation_config, context_length):
        lines.append(f"PARAMETER {key} {value}")
    path = Path(folder) / "Modelfile"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def stop_strings(template) -> list[str]:
    """The decoded text of each of the template's stop tokens, in order, without repeats or empty ones."""
    decoded = [template.tokenizer.decode([index], skip_special_tokens=False) for index in template.stop_token_ids]
    return [text for text in dict.fromkeys(decoded) if text]


def turn_pieces(template) -> TurnPieces:
    """The fixed strings the chat template renders around messages (see the module docstring); raises
    :class:`ModelfileError` when its renderings are not made of them."""

    def render(messages: list[tuple[str, str]], generation: bool = True) -> str:
        msgs = [{"role": role, "content": content} for role, content in messages]
        return template.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation,
                                                      chat_template=template.chat_template,
                                                      **(template.chat_kwargs or {}))

    system, user1, assistant1 = ("system", _S), ("user", _U1), ("assistant", _A1)
    try:
        render([system, user1])
        head = [system]
    except Exception:  # a template that refuses system messages
        head = []
    try:
        full = render([*head, user1, assistant1, ("user", _U2)])
        user_suffix = _after(render([*head, user1], False), _U1)
        assistant_suffix = _after(render([*head, user1, assistant1], False), _A1)
        plain = render([user1, assistant1, ("user", _U2)])
    except ModelfileError:
        raise
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelfileError(f"--to_ollama: the chat template fails on a plain user/assistant conversation "
                             f"({reason})") from exc
    segments = _segments(full, [m for _, m in head] + [_U1, _A1, _U2])
    user_to_assistant, assistant_to_user, after_last_user = segments[-3:]
    generation = _strip_prefix(after_last_user, user_suffix, "the generation prompt does not follow the user turn")
    assistant_prefix = _strip_prefix(user_to_assistant, user_suffix, "an assistant turn does not follow the user turn")
    user_prefix = _strip_prefix(assistant_to_user, assistant_suffix, "a user turn does not follow the assistant turn")
    first_other = _strip_suffix(_segments(plain, [_U1, _A1, _U2])[0], user_prefix,
                                "the first user turn does not start like the others")
    first_system = system_suffix = None
    if head:
        first_system = segments[0]
        system_suffix = _strip_suffix(segments[1], user_prefix,
                                      "the system message is not a turn of its own (folded into the user turn?)")
    pieces = TurnPieces(first_system, None, system_suffix or "", first_other, user_prefix, user_suffix,
                        assistant_prefix, assistant_suffix, generation)
    if head:
        pieces.system_prefix = _later_system_prefix(render, pieces)
    probes = [[*head, user1], [*head, user1, assistant1, ("user", _U2)], [user1],
              [user1, assistant1, ("user", _U2), ("assistant", _A2), ("user", _U3)]]
    if pieces.system_prefix is not None:
        probes.append([user1, assistant1, ("system", _S2), ("user", _U2)])
    for probe in probes:
        expected, got = render(probe), assemble(pieces, probe)
        if got != expected:
            roles = ", ".join(role for role, _ in probe)
            raise ModelfileError(f"--to_ollama: the chat template renders [{roles}] in a way a per-role Ollama "
                                 f"TEMPLATE cannot reproduce (first difference at character "
                                 f"{_first_difference(expected, got)}: {expected[:200]!r})")
    return pieces


def assemble(pieces: TurnPieces, messages: list[tuple[str, str]]) -> str:
    """The prompt the TEMPLATE written from ``pieces`` gives for ``messages`` (role, content), generation
    prompt included; the writer's check that the pieces reproduce the chat template."""
    out = []
    for index, (role, content) in enumerate(messages):
        first, last = index == 0, index == len(messages) - 1
        if role == "system":
            if first and pieces.first_system is not None:
                out.append(pieces.first_system + content + pieces.system_suffix)
            elif not first and pieces.system_prefix is not None:
                out.append(pieces.system_prefix + content + pieces.system_suffix)
        elif role == "user":
            out.append((pieces.first_other if first else "") + pieces.user_prefix + content + pieces.user_suffix
                       + (pieces.generation if last else ""))
        elif role == "assistant":
            out.append((pieces.first_other if first else "") + pieces.assistant_prefix + content
                       + ("" if last else pieces.assistant_suffix))
    return "".join(out)


def go_template(pieces: TurnPieces) -> str:
    """The Ollama TEMPLATE (Go text/template) that renders ``.Messages`` as :func:`assemble` does."""

    def when(condition: str, text: str) -> str:
        return f"{{{{ if {condition} }}}}{_go_text(text)}{{{{ end }}}}" if text else ""

    content = "{{ .Content }}"
    branches = []
    if pieces.first_system is not None:
        if pieces.system_prefix == pieces.first_system:
            system = _go_text(pieces.first_system) + content + _go_text(pieces.system_suffix)
        elif pieces.system_prefix is None:  # only a first system message is rendered
            system = (f"{{{{ if eq $i 0 }}}}{_go_text(pieces.first_system)}{content}"
                      f"{_go_text(pieces.system_suffix)}{{{{ end }}}}")
        else:
            opening = (f"{{{{ if eq $i 0 }}}}{_go_text(pieces.first_system)}{{{{ else }}}}"
                       f"{_go_text(pieces.system_prefix)}{{{{ end }}}}")
            system = opening + content + _go_text(pieces.system_suffix)
        branches.append(('eq .Role "system"', system))
    first = when("eq $i 0", pieces.first_other)
    branches.append(('eq .Role "user"', first + _go_text(pieces.user_prefix) + content + _go_text(pieces.user_suffix)
                     + when("$last", pieces.generation)))
    branches.append(('eq .Role "assistant"', first + _go_text(pieces.assistant_prefix) + content
                     + when("not $last", pieces.assistant_suffix)))
    body = "".join(f"{{{{ {'if' if n == 0 else 'else if'} {cond} }}}}{text}" for n, (cond, text) in enumerate(branches))
    return ("{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
            f"{body}{{{{ end }}}}{{{{ end }}}}")


def quote(value: str, what: str, triple: bool = False) -> str:
    """``value`` quoted for a Modelfile line; raises :class:`ModelfileError` when Ollama would read it back
    differently (the format has no escapes)."""
    bad = sorted({ch for ch in value if not (ch.isprintable() or ch in " \t\n\r")})
    if bad:
        raise ModelfileError(f"--to_ollama: {what} contains {', '.join(repr(c) for c in bad)}, which an Ollama "
                             "Modelfile cannot hold")
    mark = '"""' if triple or "\n" in value or "\r" in value or value.startswith('""') else '"'
    for pos, ch in enumerate(value):  # the parser ends a value at the first line ending after its closing quotes
        if ch in "\r\n":
            head = (mark + value[:pos]).rstrip()
            if len(head) >= 2 * len(mark) and head.endswith(mark):
                raise ModelfileError(f"--to_ollama: {what} has a line ending in {mark}, which ends a quoted "
                                     "Modelfile value early")
    return mark + value + mark


def _parameters(generation_config, context_length: int | None) -> list[tuple[str, str]]:
    out = []
    if context_length:
        out.append(("num_ctx", str(int(context_length))))
    if generation_config is None:
        return out
    get = lambda name: getattr(generation_config, name, None)  # noqa: E731
    if get("do_sample") is False:  # greedy decoding
        out.append(("temperature", "0"))
    else:
        out += [(key, _number(get(name))) for key, name in (("temperature", "temperature"), ("top_p", "top_p"),
                                                             ("top_k", "top_k")) if get(name) is not None]
    if get("repetition_penalty") is not None:
        out.append(("repeat_penalty", _number(get("repetition_penalty"))))
    return out


def _number(value) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _go_text(text: str) -> str:
    """``text`` as literal Go template text, which always stands between two actions: ``{{`` would start an
    action, and so would a ``{`` at its end together with the next action's braces."""
    text = text.replace("{{", '{{ "{{" }}')
    return text[:-1] + '{{ "{" }}' if text.endswith("{") else text


def _segments(text: str, markers: list[str]) -> list[str]:
    """``text`` cut at each of ``markers`` (which must appear once each, in order): the pieces between them."""
    pieces, rest = [], text
    for marker in markers:
        if rest.count(marker) != 1:
            raise ModelfileError(f"--to_ollama: the chat template does not render each message's content exactly "
                                 f"once as given (a placeholder appears {rest.count(marker)} times)")
        before, rest = rest.split(marker)
        pieces.append(before)
    return [*pieces, rest]


def _after(text: str, marker: str) -> str:
    return _segments(text, [marker])[1]


def _strip_prefix(text: str, prefix: str, why: str) -> str:
    if not text.startswith(prefix):
        raise ModelfileError(f"--to_ollama: the chat template cannot be written as an Ollama TEMPLATE: {why}")
    return text[len(prefix):]


def _strip_suffix(text: str, suffix: str, why: str) -> str:
    if not text.endswith(suffix):
        raise ModelfileError(f"--to_ollama: the chat template cannot be written as an Ollama TEMPLATE: {why}")
    return text[:len(text) - len(suffix)]


def _later_system_prefix(render, pieces: TurnPieces) -> str | None:
    """The text before a system message that is not the first, or None if the template refuses one or renders
    it other than as prefix + content + the system suffix."""
    try:
        text = render([("user", _U1), ("assistant", _A1), ("system", _S2), ("user", _U2)])
        between = _segments(text, [_U1, _A1, _S2, _U2])
    except Exception:
        return None
    if not between[2].startswith(pieces.assistant_suffix) or between[3] != pieces.system_suffix + pieces.user_prefix:
        return None
    return between[2][len(pieces.assistant_suffix):]


def _without_leading(pieces: TurnPieces, bos: str) -> TurnPieces:
    for name in ("first_system", "first_other"):
        value = getattr(pieces, name)
        if value is not None and value.startswith(bos):
            setattr(pieces, name, value[len(bos):])
    return pieces


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
