"""The OpenAI-compatible HTTP app (FastAPI): health, model list, chat and text completions.

Bodies are read and checked by hand (``swiftkit.inference.protocol``) so every error has the OpenAI
shape ``{"error": {"message", "type", "param", "code"}}``: 400 for malformed JSON, missing or
invalid fields and too many tokens, 401 for a missing or wrong API key, 404 for an unknown model
(the message lists the served ones), 413 for a body over the size limit, 503 while shutting down.
Non-streaming requests go through the batching scheduler; a stream is sent as server-sent events
(``data: {...}`` lines, then ``data: [DONE]``). Each finished request logs one line with its
token counts and tokens/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from swiftkit.inference.openai import (
    chat_body,
    chat_chunks,
    completion_body,
    completion_chunks,
    prepare_chat,
    prepare_completion,
)
from swiftkit.inference.protocol import (
    ChatRequest,
    CompletionRequest,
    ProtocolError,
    SamplingDefaults,
    error_body,
)
from swiftkit.inference.scheduler import SchedulerClosed

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               413: "invalid_request_error", 503: "server_error"}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, ERROR_TYPES.get(status, "server_error"), param, code), status_code=status)


def _log(path: str, model: str, prompt: int, completion: int, start: float) -> None:
    took = max(time.monotonic() - start, 1e-9)
    print(f"[swiftkit] deploy: {path} model={model} prompt_tokens={prompt} completion_tokens={completion} "
          f"{took:.2f} s {completion / took:.1f} tokens/s", file=sys.stderr, flush=True)


def _logger(path: str, model: str, prompt: int, done: list, start: float):
    """A callback logging a finished stream; ``done[0]`` holds its completion tokens by then."""
    return lambda: _log(path, model, prompt, done[0], start)


async def _read_json(request: Request, limit: int):
    """The parsed body; 413 past ``limit`` bytes (checked while reading), 400 when not JSON."""
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
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"the request body is not valid JSON: {exc}", code="invalid_json") from exc


def _sse(chunks, on_done):
    """Server-sent events from chunk bodies; an error mid-stream becomes an error event."""
    try:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    except SchedulerClosed as exc:
        yield f"data: {json.dumps(error_body(str(exc), 'server_error'))}\n\n"
    except Exception as exc:  # noqa: BLE001 - the stream has started; report in-band
        yield f"data: {json.dumps(error_body(f'generation failed: {exc}', 'server_error'))}\n\n"
    yield "data: [DONE]\n\n"
    on_done()


def _counting(events, counter: list):
    for event in events:
        if not isinstance(event, str):
            counter[0] = event.completion_tokens
        yield event


def build_app(engine, scheduler, *, defaults: SamplingDefaults | None = None, api_key: str | None = None,
              max_body_bytes: int = 4 * 1024 * 1024, address: str = "") -> FastAPI:
    """The app serving ``engine.model_names()``; ``scheduler`` is closed when the app shuts down."""
    defaults = defaults or SamplingDefaults()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        print(f"[swiftkit] deploy: serving {', '.join(engine.model_names())} at {address}/v1", file=sys.stderr,
              flush=True)
        yield
        scheduler.close()
        print("[swiftkit] deploy: stopped", file=sys.stderr, flush=True)

    app = FastAPI(title="swiftkit", lifespan=lifespan)
    app.state.engine, app.state.scheduler = engine, scheduler

    @app.middleware("http")
    async def check_api_key(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            if header != f"Bearer {api_key}":
                reason = "no API key given" if not header else "the API key is not valid"
                return error_response(401, f"{reason}: send the header 'Authorization: Bearer <api_key>'",
                                      code="invalid_api_key")
        return await call_next(request)

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError):
        return error_response(exc.status, str(exc), exc.param, exc.code)

    @app.exception_handler(SchedulerClosed)
    async def closed(request: Request, exc: SchedulerClosed):
        return error_response(503, str(exc))

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

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        start = time.monotonic()
        req = ChatRequest.from_dict(await _read_json(request, max_body_bytes), defaults)
        prompt, params = prepare_chat(engine, req)
        if req.stream:
            done = [0]
            events = _counting(scheduler.submit_stream(prompt, params, req.model), done)
            chunks = chat_chunks(req, len(prompt), events)
            return StreamingResponse(_sse(chunks, _logger("/v1/chat/completions", req.model, len(prompt), done, start)),
                                     media_type="text/event-stream")
        replies = await asyncio.wrap_future(scheduler.submit([prompt] * req.n, params, req.model))
        body = chat_body(req, len(prompt), replies)
        _log("/v1/chat/completions", req.model, len(prompt), body["usage"]["completion_tokens"], start)
        return body

    @app.post("/v1/completions")
    async def completions(request: Request):
        start = time.monotonic()
        req = CompletionRequest.from_dict(await _read_json(request, max_body_bytes), defaults)
        prepared = prepare_completion(engine, req)
        prompt_tokens = sum(len(p) for p, _ in prepared)
        if req.stream:
            done = [0]
            prompt, params = prepared[0]
            events = _counting(scheduler.submit_stream(prompt, params, req.model), done)
            on_done = _logger("/v1/completions", req.model, prompt_tokens, done, start)
            return StreamingResponse(_sse(completion_chunks(req, prompt_tokens, events), on_done),
                                     media_type="text/event-stream")
        futures = [scheduler.submit([p] * req.n, params, req.model) for p, params in prepared]
        replies = [r for group in await asyncio.gather(*map(asyncio.wrap_future, futures)) for r in group]
        body = completion_body(req, prompt_tokens, replies)
        _log("/v1/completions", req.model, prompt_tokens, body["usage"]["completion_tokens"], start)
        return body

    return app
