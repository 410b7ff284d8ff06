"""The ``swiftkit deploy`` server run in a background thread, for a caller that needs an HTTP endpoint for
a model it has already loaded (an external evaluation harness pointed at it, a test).

:func:`serve_in_background` builds the same app and server as the deploy recipe (a batching
:class:`~swiftkit.inference.scheduler.Scheduler`, :func:`~swiftkit.serving.app.build_app`,
:func:`~swiftkit.serving.app.make_server`) on a socket it binds itself, so ``port=0`` gets a free port
with no race between choosing it and listening on it (importing this module imports fastapi and
uvicorn; only commands that serve import it). The context manager yields the base URL once
``/health`` answers, and on exit drains the scheduler, stops uvicorn and joins its thread.

    with serve_in_background(engine, served_name="tiny") as base_url:
        ...  # POST f"{base_url}/v1/chat/completions" with {"model": "tiny", ...}
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from swiftkit.inference.protocol import SamplingDefaults
from swiftkit.inference.scheduler import Scheduler
from swiftkit.serving.app import Limits, build_app, make_server


class ServerStartError(RuntimeError):
    """The background server did not come up; the message says why."""


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerStartError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _wait_healthy(url: str, thread: threading.Thread, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise ServerStartError(f"the server thread for {url} ended before /health answered")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
                last = f"HTTP {reply.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.05)
    raise ServerStartError(f"{url}/health did not answer within {timeout_s:.0f} s ({last})")


@contextlib.contextmanager
def serve_in_background(engine, *, served_name: str, host: str = "127.0.0.1", port: int = 0,
                        api_key: str | None = None, defaults: SamplingDefaults | None = None,
                        max_batch_size: int = 8, batch_wait_ms: float = 5.0, drain_timeout: float = 10.0,
                        start_timeout: float = 60.0) -> Iterator[str]:
    """Serve ``engine`` (an :class:`~swiftkit.inference.base.InferEngine`) over the OpenAI API at
    ``http://HOST:PORT`` while the block runs; yields that base URL (``/v1/...`` lies under it).

    ``served_name`` is added as the engine's base model when the engine does not serve that name
    yet. ``port=0`` picks a free port. On exit, requests still running get ``drain_timeout``
    seconds, then the server stops and its thread is joined. Raises :class:`ServerStartError`
    when the server is not answering ``/health`` within ``start_timeout`` seconds."""
    if served_name not in engine.model_names():
        engine.add_model(served_name, None)
    sock = _bound_socket(host, port)
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{bound_port}"
    scheduler = Scheduler(engine, max_batch_size=max_batch_size, max_wait_ms=batch_wait_ms)
    app = build_app(engine, scheduler, defaults=defaults or SamplingDefaults(), api_key=api_key, limits=Limits(),
                    address=url)
    server = make_server(app, scheduler, host=host, port=bound_port, drain_timeout=drain_timeout)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"swiftkit-serve-{bound_port}",
                              daemon=True)
    thread.start()
    try:
        _wait_healthy(url, thread, start_timeout)
        yield url
    finally:
        server.should_exit = True
        thread.join(drain_timeout + 15)
        scheduler.close(timeout=5)  # a no-op after a clean shutdown; stops the worker if uvicorn never started
        sock.close()
