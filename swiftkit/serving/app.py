"""The OpenAI-compatible HTTP app (FastAPI): health, model list, chat and text completions.

Every body passes the typed models of :mod:`swiftkit.serving.schema` (documented in
``/openapi.json``) and every error has the OpenAI shape ``{"error": {"message", "type", "param",
"code"}}``: 400 for malformed JSON, unknown, missing or invalid fields, too many tokens or
sequences, or prompt logprobs from an engine without them, 401 for a missing or wrong API key, 404
for an unknown model (the message lists the served ones), 413 for a body over the size limit, 503
while shutting down.

One client cannot stall the others: parsing, validation and tokenization run in worker threads,
never on the event loop; a request asks for at most ``max_request_sequences`` generations (prompts
x n); a client that hangs up withdraws its request (a waiting one leaves the queue; a running one,
streamed or not, leaves the scheduler's continuous batch at its next token, freeing its rows; with
an engine that runs whole batches, such as vLLM, a batch stops once all its requests are withdrawn).
Streamed and non-streamed requests go through the same scheduler
(:mod:`swiftkit.inference.scheduler`); a stream is sent as server-sent events (``data: {...}``
lines, then ``data: [DONE]``); a failure during a stream is sent as an error event, never as a
finished reply. A completion with ``echo`` and ``logprobs`` also has its prompts scored (a scoring
job of the scheduler), and with ``max_tokens`` 0 nothing else: the prompt's token entries come
first, then the reply's, as OpenAI's legacy completions and vLLM give them. Each finished request
logs one line with its token counts and tokens/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import sys
import threading
import time
from dataclasses import dataclass

import uvicorn
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from swiftkit.inference.base import Generated
from swiftkit.inference.openai import (
    chat_body,
    chat_chunks,
    check_prompt_scoring,
    completion_body,
    completion_chunks,
    prepare_chat,
    prepare_completion,
    with_prompt_logprobs,
)
from swiftkit.inference.protocol import (
    ChatRequest,
    CompletionRequest,
    ProtocolError,
    SamplingDefaults,
    error_body,
)
from swiftkit.inference.scheduler import SchedulerClosed
from swiftkit.serving.schema import ChatCompletionBody, CompletionBody, ErrorBody, parse_body

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               413: "invalid_request_error", 503: "server_error"}
ERROR_RESPONSES = {status: {"model": ErrorBody} for status in (400, 401, 404, 413, 503)}
CLIENT_GONE = 499  # logged only: the client is no longer there to read it
_END = object()


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (the deploy flags of the same names)."""

    max_body_bytes: int = 4 * 1024 * 1024
    max_json_depth: int = 64
    max_request_sequences: int = 256


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, ERROR_TYPES.get(status, "server_error"), param, code), status_code=status)


def _log(path: str, model: str, prompt: int, completion: int, start: float, note: str = "") -> None:
    took = max(time.monotonic() - start, 1e-9)
    print(f"[swiftkit] deploy: {path} model={model} prompt_tokens={prompt} completion_tokens={completion} "
          f"{took:.2f} s {completion / took:.1f} tokens/s{note}", file=sys.stderr, flush=True)


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body; 413 past ``limit`` bytes (checked while reading)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(f"the request body is {declared} bytes; the limit is {limit} (max_body_bytes)",
                            status=413, code="request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ProtocolError(f"the request body is over the limit of {limit} bytes (max_body_bytes)",
                                status=413, code="request_too_large")
    return bytes(body)


def _check_sequences(count: int, limit: int, param: str) -> None:
    if count > limit:
        raise ProtocolError(f"this request asks for {count} generations (prompts x n); the limit is {limit} "
                            "(max_request_sequences): split it into smaller requests", param,
                            code="too_many_sequences")


async def _disconnected(request: Request) -> None:
    """Returns when the client hangs up (the body has been read, so only the disconnect is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _results_or_withdraw(request: Request, scheduler, futures: list) -> list | None:
    """The results of ``futures``, or None once the client hangs up (its jobs are withdrawn)."""
    waiting = asyncio.ensure_future(asyncio.gather(*map(asyncio.wrap_future, futures)))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if waiting.done():
        return waiting.result()
    for future in futures:
        scheduler.cancel(future)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await waiting
    return None


async def _sse(stream, chunks, on_done):
    """Server-sent events from chunk bodies. The chunks are produced in a worker thread; a failure
    becomes an error event; a client that hangs up (this generator is cancelled) or a stream left
    early withdraws the request, so generation stops at its next token."""
    try:
        while True:
            chunk = await to_thread.run_sync(next, chunks, _END, abandon_on_cancel=True)
            if chunk is _END:
                break
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    except SchedulerClosed as exc:
        yield f"data: {json.dumps(error_body(str(exc), 'server_error', code='shutting_down'))}\n\n"
    except ProtocolError as exc:
        yield f"data: {json.dumps(error_body(str(exc), 'invalid_request_error', exc.param, exc.code))}\n\n"
    except Exception as exc:  # noqa: BLE001 - the stream has started; report in-band
        yield f"data: {json.dumps(error_body(f'generation failed: {exc}', 'server_error'))}\n\n"
    finally:
        stream.close()
        on_done()
    yield "data: [DONE]\n\n"


def _counting(events, counter: list):
    for event in events:
        if not isinstance(event, str):
            counter[0] = event.completion_tokens
        yield event


def _openapi(app: FastAPI, bodies: dict[str, type]):
    """``app.openapi`` documenting each POST route's request body (read by hand, not by FastAPI)."""
    def build() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description=app.description)
            _, defs = models_json_schema([(body, "validation") for body in bodies.values()],
                                         ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            for path, body in bodies.items():
                schema["paths"][path]["post"]["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def build_app(engine, scheduler, *, defaults: SamplingDefaults | None = None, api_key: str | None = None,
              limits: Limits = Limits(), address: str = "") -> FastAPI:
    """The app serving ``engine.model_names()``; ``scheduler`` is closed when the app shuts down."""
    defaults = defaults or SamplingDefaults()
    expected = f"Bearer {api_key}".encode() if api_key else None

    @contextlib.asynccontextmanager
    async def lifespan(app):
        print(f"[swiftkit] deploy: serving {', '.join(engine.model_names())} at {address}/v1", file=sys.stderr,
              flush=True)
        yield
        scheduler.close()
        print("[swiftkit] deploy: stopped", file=sys.stderr, flush=True)

    app = FastAPI(title="swiftkit", version="1", lifespan=lifespan,
                  description="OpenAI-compatible chat and text completions served by `swiftkit deploy`.")
    app.state.engine, app.state.scheduler = engine, scheduler

    @app.middleware("http")
    async def check_api_key(request: Request, call_next):
        if expected and request.url.path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            if not hmac.compare_digest(header.encode("utf-8", "replace"), expected):
                reason = "no API key given" if not header else "the API key is not valid"
                return error_response(401, f"{reason}: send the header 'Authorization: Bearer <api_key>'",
                                      code="invalid_api_key")
        return await call_next(request)

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError):
        return error_response(exc.status, str(exc), exc.param, exc.code)

    @app.exception_handler(SchedulerClosed)
    async def closed(request: Request, exc: SchedulerClosed):
        return error_response(503, str(exc), code="shutting_down")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": engine.model_names(), "scheduler": dict(scheduler.stats)}

    @app.get("/v1/models")
    async def models():
        created = int(time.time())
        served = engine.served_models()
        base = next((n for n, a in served.items() if a is None), None)
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "swiftkit",
             "root": name, "parent": None if adapter is None else base}
            for name, adapter in served.items()
        ]}

    def read_chat(raw: bytes):  # runs in a worker thread
        req = ChatRequest.from_dict(parse_body(raw, ChatCompletionBody, limits.max_json_depth), defaults)
        _check_sequences(req.n, limits.max_request_sequences, "n")
        return (req, *prepare_chat(engine, req))

    def read_completion(raw: bytes):  # runs in a worker thread
        req = CompletionRequest.from_dict(parse_body(raw, CompletionBody, limits.max_json_depth), defaults)
        _check_sequences(len(req.prompts) * req.n, limits.max_request_sequences, "n")
        scoring = check_prompt_scoring(engine, req)
        prepared = prepare_completion(engine, req)
        offsets = [engine.text_offsets(text, ids) for text, (ids, _) in zip(req.prompts, prepared)] if scoring else []
        return req, prepared, offsets

    def stream(path, req, prompt, params, prompt_tokens, make_chunks, start):
        done = [0]
        events = scheduler.submit_stream(prompt, params, req.model)
        chunks = make_chunks(req, prompt_tokens, _counting(events, done))
        on_done = lambda: _log(path, req.model, prompt_tokens, done[0], start)  # noqa: E731
        return StreamingResponse(_sse(events, chunks, on_done), media_type="text/event-stream")

    @app.post("/v1/chat/completions", responses=ERROR_RESPONSES)
    async def chat(request: Request):
        start, path = time.monotonic(), "/v1/chat/completions"
        raw = await _read_body(request, limits.max_body_bytes)
        req, prompt, params = await to_thread.run_sync(read_chat, raw)
        if req.stream:
            return stream(path, req, prompt, params, len(prompt), chat_chunks, start)
        found = await _results_or_withdraw(request, scheduler, [scheduler.submit([prompt] * req.n, params, req.model)])
        if found is None:
            _log(path, req.model, len(prompt), 0, start, "; the client hung up, request withdrawn")
            return Response(status_code=CLIENT_GONE)
        body = chat_body(req, len(prompt), found[0])
        _log(path, req.model, len(prompt), body["usage"]["completion_tokens"], start)
        return body

    @app.post("/v1/completions", responses=ERROR_RESPONSES)
    async def completions(request: Request):
        start, path = time.monotonic(), "/v1/completions"
        raw = await _read_body(request, limits.max_body_bytes)
        req, prepared, offsets = await to_thread.run_sync(read_completion, raw)
        prompt_tokens = sum(len(p) for p, _ in prepared)
        if req.stream:
            prompt, params = prepared[0]
            return stream(path, req, prompt, params, prompt_tokens, completion_chunks, start)
        generating = req.params.max_tokens > 0  # 0 (with echo): the prompts come back, scored or not
        futures = [scheduler.submit([p] * req.n, params, req.model) for p, params in prepared] if generating else []
        if offsets:
            futures.append(scheduler.submit_scoring([p for p, _ in prepared], req.params.top_logprobs, req.model))
        found = await _results_or_withdraw(request, scheduler, futures)
        if found is None:
            _log(path, req.model, prompt_tokens, 0, start, "; the client hung up, request withdrawn")
            return Response(status_code=CLIENT_GONE)
        if generating:
            replies = [r for group in found[:len(prepared)] for r in group]
        else:
            replies = [Generated("", 0, "length") for _ in range(len(prepared) * req.n)]
        if offsets:
            replies = with_prompt_logprobs(req, replies, found[-1], offsets)
        body = completion_body(req, prompt_tokens, replies)
        _log(path, req.model, prompt_tokens, body["usage"]["completion_tokens"], start)
        return body

    app.openapi = _openapi(app, {"/v1/chat/completions": ChatCompletionBody, "/v1/completions": CompletionBody})
    return app


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose shutdown (SIGINT/SIGTERM or ``should_exit``) first drains the scheduler:
    new requests get 503 at once, queued and running ones get ``drain_timeout`` seconds, then those
    left get 503 (a stream: an error event) before the connections close."""

    def __init__(self, config: uvicorn.Config, scheduler, drain_timeout: float):
        super().__init__(config)
        self.scheduler = scheduler
        self.drain_timeout = drain_timeout

    async def shutdown(self, sockets=None) -> None:
        threading.Thread(target=self.scheduler.drain, args=(self.drain_timeout,), name="swiftkit-drain",
                         daemon=True).start()
        await super().shutdown(sockets)


def make_server(app: FastAPI, scheduler, *, host: str, port: int, drain_timeout: float) -> DrainingServer:
    """The server for ``app``; uvicorn's own grace period outlasts the drain so the 503s get sent."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=drain_timeout + 10)
    return DrainingServer(config, scheduler, drain_timeout)
