"""A real `swiftkit deploy` server on 127.0.0.1 (a thread of the test process) and raw HTTP helpers."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request

from hosts import HOST

KEY = "sk-reliability"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """The deploy recipe for ``flags`` serving on a free port until ``stop()``."""

    def __init__(self, **flags):
        from swiftkit.config.commands import DeployConfig
        from swiftkit.recipes.deploy import DeployRecipe

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.recipe = DeployRecipe(DeployConfig.from_flat({"port": self.port, **flags}), HOST)
        self.recipe.setup()
        self.server = self.recipe.server()
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        self.model = self.recipe.engine.model_names()[0]

    @property
    def scheduler(self):
        return self.recipe.scheduler

    def stop(self, timeout: float = 60) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def post(url: str, body, key: str | None = KEY, timeout: float = 120) -> tuple[int, dict]:
    """POST ``body`` (a dict, or raw bytes sent as they are); ``(status, parsed JSON reply)``."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def stream_events(port: int, path: str, body: dict, key: str | None = KEY, stop_after: int | None = None):
    """The ``data:`` payloads of a streamed reply (parsed JSON, or the ``[DONE]`` string); with
    ``stop_after``, hang up (RST-free shutdown) once that many have arrived."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request("POST", path, json.dumps({**body, "stream": True}), headers)
    response = conn.getresponse()
    if response.status != 200:  # refused before the stream started: an ordinary JSON error body
        error = json.loads(response.read())
        conn.close()
        return response.status, [error]
    events = []
    try:
        while stop_after is None or len(events) < stop_after:
            line = response.fp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                payload = line[6:].strip().decode()
                events.append(payload if payload == "[DONE]" else json.loads(payload))
                if payload == "[DONE]":
                    break
    finally:
        if stop_after is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
    return response.status, events


def wait_idle(scheduler, timeout: float = 60) -> float:
    """Seconds until the scheduler has nothing queued or running."""
    start = time.perf_counter()
    while scheduler._pending or scheduler._running:
        assert time.perf_counter() - start < timeout, "the scheduler never went idle"
        time.sleep(0.005)
    return time.perf_counter() - start
