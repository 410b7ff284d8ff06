"""The HTTP server of `swiftkit rollout` (FastAPI): GRPO rollouts generated away from the training process.

The endpoints and their bodies are swiftkit's own small protocol, written down in
:mod:`swiftkit.inference.rollout_protocol`: ``GET /health``, ``POST /generate`` (prompt token ids in, ``n``
sampled replies per prompt out, as token ids) and ``POST /update_weights`` (a safetensors body: the trainer's
adapter or parameters). Requests run one at a time in a worker thread, in the order they arrive, so a weight push
never lands in the middle of a generation and ``/health`` answers while either runs. Every request body is
checked first: unknown or mistyped fields, token ids outside the vocabulary and a prompt plus ``max_tokens`` past
the context are 400s with the field named, never a crash of the model.

The server holds no API key: whoever reaches it can replace the weights. It listens on 127.0.0.1 unless
``--host`` says otherwise (and then warns).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Annotated, Optional

import uvicorn
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swiftkit.inference.protocol import error_body
from swiftkit.inference.rollout_protocol import PROTOCOL, RolloutProtocolError, RolloutRequest, decode_weights

MAX_N = 1024
TokenId = Annotated[int, Field(ge=0)]


class GenerateBody(BaseModel):
    """The body of ``POST /generate``."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    prompts: list[Annotated[list[TokenId], Field(min_length=1)]] = Field(min_length=1)
    n: int = Field(1, ge=1, le=MAX_N)
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    repetition_penalty: float = Field(1.0, gt=0)
    stop_token_ids: Optional[list[TokenId]] = None
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    logprobs: bool = False


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(error_body(message, kind, param), status_code=status)


def _log(message: str) -> None:
    print(f"[swiftkit] rollout: {message}", file=sys.stderr, flush=True)


def parse_generate(raw: bytes, *, vocab_size: int | None, max_model_len: int | None) -> RolloutRequest:
    """A checked :class:`RolloutRequest` from a ``/generate`` body (a :class:`RolloutProtocolError` otherwise)."""
    try:
        body = GenerateBody.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RolloutProtocolError(f"{where}: {first['msg']}", where) from None
    ids = [t for p in body.prompts for t in p] + list(body.stop_token_ids or [])
    if vocab_size is not None and ids and max(ids) >= vocab_size:
        raise RolloutProtocolError(f"token id {max(ids)} is outside the served model's vocabulary ({vocab_size} "
                                   "ids): the trainer's tokenizer is not the served model's", "prompts")
    longest = max(len(p) for p in body.prompts)
    if max_model_len is not None and longest + body.max_tokens > max_model_len:
        raise RolloutProtocolError(f"a prompt of {longest} tokens plus max_tokens {body.max_tokens} is past the "
                                   f"served context of {max_model_len} tokens (--max_model_len)", "max_tokens")
    stops = tuple(body.stop_token_ids) if body.stop_token_ids is not None else None
    return RolloutRequest(prompts=body.prompts, n=body.n, max_tokens=body.max_tokens, temperature=body.temperature,
                          top_p=body.top_p, top_k=body.top_k, repetition_penalty=body.repetition_penalty,
                          stop_token_ids=stops, seed=body.seed, logprobs=body.logprobs)


def build_rollout_app(engine, *, model_name: str, backend: str, batch_size: int | None = None,
                      address: str = "") -> FastAPI:
    """The app serving ``engine`` (a :class:`~swiftkit.inference.base.RolloutEngine`) to GRPO trainers."""
    turn = threading.Lock()  # one request at a time, in arrival order
    state = {"version": 0}
    identity = engine.rollout_identity()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        _log(f"serving {model_name} ({backend}) at {address}")
        yield
        _log("stopped")

    app = FastAPI(title="swiftkit rollout", version=str(PROTOCOL), lifespan=lifespan,
                  description="GRPO rollouts for `swiftkit rlhf --use_vllm true --vllm_mode server` "
                              "(protocol: swiftkit.inference.rollout_protocol).")

    @app.exception_handler(RolloutProtocolError)
    async def bad_request(request: Request, exc: RolloutProtocolError):
        return _error(400, str(exc), exc.param)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/health")
    async def health():
        return {"status": "ok", "protocol": PROTOCOL, "model": model_name, "backend": backend,
                "version": state["version"], "identity": identity}

    def generate(raw: bytes) -> dict:  # runs in a worker thread
        request = parse_generate(raw, vocab_size=identity.get("vocab_size"), max_model_len=engine.max_model_len)
        start = time.monotonic()
        with turn:
            replies = engine.generate_rollouts(request, batch_size)
            version = state["version"]
        tokens = sum(len(r.token_ids) for r in replies)
        _log(f"/generate {len(request.prompts)} prompts x {request.n}: {tokens} tokens in "
             f"{time.monotonic() - start:.2f} s (weights version {version})")
        return {"completion_ids": [r.token_ids for r in replies], "finish_reasons": [r.finish_reason for r in replies],
                "logprobs": [r.logprobs for r in replies] if request.logprobs else None, "version": version}

    def update(raw: bytes) -> dict:  # runs in a worker thread
        tensors, meta = decode_weights(raw)
        start = time.monotonic()
        with turn:
            engine.update_weights(tensors, meta)
            state["version"] += 1
            version = state["version"]
        _log(f"/update_weights {meta['kind']} of step {meta.get('step', '?')}: {len(tensors)} tensors, "
             f"{len(raw) / 2**20:.1f} MiB in {time.monotonic() - start:.2f} s (weights version {version})")
        return {"version": version, "tensors": len(tensors)}

    @app.post("/generate")
    async def generate_route(request: Request):
        return await to_thread.run_sync(generate, await request.body())

    @app.post("/update_weights")
    async def update_route(request: Request):
        return await to_thread.run_sync(update, await request.body())

    return app


def make_rollout_server(app: FastAPI, *, host: str, port: int) -> uvicorn.Server:
    """The uvicorn server for ``app``; ``run()`` blocks until SIGINT/SIGTERM."""
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
