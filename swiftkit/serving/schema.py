"""Typed request bodies of the deploy server: the first gate every request passes, and what
``/openapi.json`` documents.

A raw body is parsed and validated in one step (:func:`parse_body`): strict JSON (no ``NaN`` or
``Infinity``, no lone UTF-16 surrogates, at most :data:`PARSER_DEPTH` levels), strict types (``true``
is not an integer, ``"1"`` is not a number), finite numbers inside their ranges, and no field the
server does not know, so a typo such as ``max_token`` is an error rather than a silent default.
Known OpenAI fields the server cannot honour (``response_format`` other than text, ``logit_bias``,
non-zero ``presence_penalty`` / ``frequency_penalty``, ``tool_choice: "required"``, ...) are errors
that say why. Every failure is a :class:`~swiftkit.inference.protocol.ProtocolError` (400, OpenAI
error shape) naming the field. What passes is handed on as a plain dict to
``ChatRequest.from_dict`` / ``CompletionRequest.from_dict``, which turn it into sampling params and
check how fields combine (``logprobs`` with ``stream``, ``n`` with ``stream``, ...).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from swiftkit.inference.protocol import MAX_COMPLETION_LOGPROBS, MAX_TOP_LOGPROBS, ROLES, ProtocolError

PARSER_DEPTH = 200  # the JSON parser's own nesting limit; --max_json_depth may only lower it
MAX_N = 128
MAX_STOP_STRINGS = 16
INT32 = 2**31 - 1
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch.manual_seed accepts

Finite = Annotated[float, Field(allow_inf_nan=False)]


def _whole(value):
    """JSON Schema counts 2.0 as an integer; so does the server (but not 2.5, true or "2")."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Int = Annotated[int, BeforeValidator(_whole)]
ZERO = WithJsonSchema({"type": "number", "minimum": 0, "maximum": 0})  # documented as what is accepted


def _refused(*fields: str, reason: str):
    """A validator refusing any value of ``fields`` but an empty one (0, "", {}, null)."""

    def check(cls, value):
        if value:
            raise ValueError(reason)
        return value

    return field_validator(*fields)(classmethod(check))


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImageURL(_Body):
    url: str = Field(description="An http(s) URL or a data URL (data:image/png;base64,...).")
    detail: Optional[Literal["auto", "low", "high"]] = Field(None, description="Accepted and ignored.")


class ImagePart(_Body):
    """An image for a vision-language model; a text-only model answers 400."""

    type: Literal["image_url"]
    image_url: ImageURL | str


class _Message(BaseModel):
    """Fields beyond these (``refusal``, ``annotations``, ...) are ignored."""

    model_config = ConfigDict(extra="allow", strict=True)
    name: Optional[str] = None


class OtherMessage(_Message):
    """A system, user, tool or developer message: its content is required."""

    role: Literal[tuple(r for r in ROLES if r != "assistant")]  # type: ignore[valid-type]
    content: str | list[TextPart | ImagePart]
    tool_call_id: Optional[str] = None


class AssistantMessage(_Message):
    """An earlier reply: its content may be null when it has tool_calls."""

    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    tool_calls: Optional[list[dict[str, Any]]] = None


def _kind(message) -> str | None:
    role = message.get("role") if isinstance(message, dict) else getattr(message, "role", None)
    return None if role not in ROLES else "AssistantMessage" if role == "assistant" else "OtherMessage"


Message = Annotated[
    Annotated[AssistantMessage, Tag("AssistantMessage")] | Annotated[OtherMessage, Tag("OtherMessage")],
    Discriminator(_kind, custom_error_type="invalid_role",
                  custom_error_message="a message needs a known 'role'"),
]


class FunctionDef(_Body):
    name: str = Field(min_length=1)
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    strict: Optional[bool] = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionDef


class StreamOptions(_Body):
    include_usage: Optional[bool] = None


class _Sampling(_Body):
    """Fields shared by both endpoints."""

    model: str = Field(min_length=1, description="A served model id (GET /v1/models).")
    max_tokens: Optional[Int] = Field(None, ge=1, le=INT32)
    temperature: Optional[Finite] = Field(None, ge=0, le=2, description="0 (or below 1e-5) decodes greedily.")
    top_p: Optional[Finite] = Field(None, gt=0, le=1)
    top_k: Optional[Int] = Field(None, ge=-1, le=INT32, description="Extension; -1 or 0: no top-k cut.")
    repetition_penalty: Optional[Finite] = Field(None, gt=0, le=100, description="Extension; 1.0: none.")
    seed: Optional[Int] = Field(None, ge=SEED_MIN, le=SEED_MAX)
    stop: str | list[str] | None = None
    n: Optional[Int] = Field(None, ge=1, le=MAX_N)
    stream: Optional[bool] = None
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    presence_penalty: Annotated[Optional[Finite], ZERO] = Field(None, description="Only 0 is supported.")
    frequency_penalty: Annotated[Optional[Finite], ZERO] = Field(None, description="Only 0 is supported.")
    logit_bias: Annotated[Optional[dict[str, Finite]], WithJsonSchema({"type": "object", "maxProperties": 0})] = \
        Field(None, description="Only an empty map is supported.")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        items = [value] if isinstance(value, str) else value or []
        if len(items) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(items)}")
        return value

    _penalties = _refused("presence_penalty", "frequency_penalty",
                          reason="is not supported; use 'repetition_penalty' (an extension)")
    _bias = _refused("logit_bias", reason="is not supported by this server")


class ChatCompletionBody(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Optional[Int] = Field(None, ge=1, le=INT32)
    tools: Optional[list[Tool]] = None
    tool_choice: Annotated[Any, WithJsonSchema({"enum": ["none", "auto"]})] = None
    parallel_tool_calls: Optional[bool] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[Int] = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: Annotated[Optional[dict[str, Any]], WithJsonSchema(
        {"type": "object", "properties": {"type": {"enum": ["text"]}}, "required": ["type"],
         "additionalProperties": False})] = Field(None, description='Only {"type": "text"} is supported.')

    @field_validator("tool_choice")
    @classmethod
    def _choice(cls, value):
        if value is not None and value not in ("none", "auto"):
            raise ValueError(f"{value!r} is not supported (the model decides whether to call a tool): use "
                             "'auto' or 'none'")
        return value

    @field_validator("response_format")
    @classmethod
    def _format(cls, value):
        if value is not None and value != {"type": "text"}:
            raise ValueError(f"{value.get('type', value)!r} is not supported: only {{\"type\": \"text\"}} (this "
                             "server does not constrain output to JSON)")
        return value


class CompletionBody(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | list[str]
    max_tokens: Optional[Int] = Field(None, ge=0, le=INT32,
                                      description="0 needs echo: the prompt comes back (scored, with logprobs), "
                                                  "nothing is generated.")
    echo: Optional[bool] = None
    logprobs: Optional[Int] = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS,
                                    description="With echo, the prompt's tokens are scored too (the first "
                                                "token's logprob is null).")
    suffix: Annotated[Optional[str], WithJsonSchema({"type": "string", "maxLength": 0})] = \
        Field(None, description="Not supported (no fill-in-the-middle).")
    best_of: Optional[Int] = Field(None, ge=1, le=1, description="Only 1 is supported.")

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("must be a string or a non-empty list of strings")
        return value

    _suffix = _refused("suffix", reason="is not supported by this server (no fill-in-the-middle)")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail


_TAG = re.compile(r"^([a-z]+\[.*\]|[A-Z]\w*|str|int|float|bool|none|function-\w+\[.*\]|literal\[.*\])$")


def _where(loc: tuple) -> str:
    """``('messages', 0, 'content')`` -> ``messages[0].content``; union branch tags are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _TAG.match(str(part)):
            out += f".{part}" if out else str(part)
    return out


def _message(error: dict) -> tuple[str, str | None]:
    where = _where(error["loc"])
    kind, text = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return f"'{where}' is not a field this server supports (a typo, or an OpenAI field it does not " \
               f"implement)", where
    if kind == "invalid_role":
        where += ".role"
        role = error["input"].get("role") if isinstance(error["input"], dict) else None
        return f"'{where}' must be one of {', '.join(ROLES)}, got {role!r}", where
    if kind == "missing":
        return f"'{where}' is required", where
    shown = error.get("input")
    got = "" if kind == "value_error" or isinstance(shown, (dict, list)) else f", got {repr(shown)[:80]}"
    text = text.removeprefix("Value error, ")
    return f"'{where}': {text[0].lower()}{text[1:]}{got}" if where else text, where or None


def _depth(value, limit: int) -> bool:
    """Whether ``value`` nests at most ``limit`` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            if level > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return True


def parse_body(raw: bytes, body_type: type[_Sampling], max_depth: int = 64) -> dict:
    """The body as a dict once it passes ``body_type``; otherwise a 400 naming the field."""
    try:
        body = body_type.model_validate_json(raw).model_dump(exclude_unset=True)  # parsed once
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            reason = first["msg"].removeprefix("Invalid JSON: ")
            if "recursion limit" in reason:
                reason = f"nested deeper than {PARSER_DEPTH} levels ({reason})"
            elif "surrogate" in reason or "hex escape" in reason:
                reason += " (a lone UTF-16 surrogate such as \\ud800 is not Unicode text)"
            raise ProtocolError(f"the request body is not valid JSON: {reason}", code="invalid_json") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise ProtocolError("the request body must be a JSON object", code="invalid_json") from None
        deepest = max(exc.errors(), key=lambda e: len(e["loc"]))  # the branch that got furthest
        message, param = _message(deepest if len(deepest["loc"]) > len(first["loc"]) else first)
        more = len(exc.errors()) - 1
        raise ProtocolError(message + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""),
                            param) from None
    if not _depth(body, max_depth):
        raise ProtocolError(f"the request body nests JSON deeper than {max_depth} levels (max_json_depth)",
                            code="invalid_json")
    return body
