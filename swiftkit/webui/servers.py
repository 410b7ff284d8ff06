"""`swiftkit deploy` servers run as web UI jobs: a free port, the address a job serves on, waiting until it
answers, and stopping the servers a UI process owns when it exits.

A server is an ordinary :class:`~swiftkit.webui.jobs.Job` of the ``deploy`` command, so it survives a UI
restart like any job (its record is on disk). :class:`ServerOwner` keeps the ids of the servers one tab
started or adopted from an earlier UI process, and stops them when this process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from swiftkit.config import DeployConfig
from swiftkit.recipes.deploy import API_KEY_ENV

LOOPBACK = "127.0.0.1"
ANY_ADDRESS = ("0.0.0.0", "::", "")


class ServerError(RuntimeError):
    """A deploy job ended, or did not answer in time, before it served; the message ends with its log tail."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value given to ``flag`` in ``argv`` (``--flag V`` or ``--flag=V``; the last one wins), else None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
    return value


def _default(name: str):
    return DeployConfig.flat_fields()[name][1].default


def address(argv: list[str]) -> tuple[str, int]:
    """``(host, port)`` a ``swiftkit deploy`` command line listens on (the CLI defaults when not given)."""
    host = flag_value(argv, "--host") or _default("host")
    port = flag_value(argv, "--port")
    return host, int(port) if port else _default("port")


def base_url(argv: list[str]) -> str:
    """``http://HOST:PORT`` to reach the server of ``argv`` from this machine (an any-address bind is reached on
    the loopback address)."""
    host, port = address(argv)
    host = LOOPBACK if host in ANY_ADDRESS else host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def api_key(argv: list[str]) -> str | None:
    """The key the server of ``argv`` wants: ``--api_key``, else the first line of ``--api_key_file``, else
    $SWIFTKIT_API_KEY (the job inherits this process's environment), as ``swiftkit deploy`` reads it."""
    key = flag_value(argv, "--api_key")
    if key:
        return key
    path = flag_value(argv, "--api_key_file")
    if path:
        try:
            lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        return lines[0].strip() if lines and lines[0].strip() else None
    return os.environ.get(API_KEY_ENV) or None


def served_models(url: str, key: str | None = None, timeout: float = 2.0) -> list[dict] | None:
    """``GET url/v1/models``: the served models (``{"id", "parent", ...}``, base model first), or None while
    nothing answers there."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url.rstrip("/") + "/v1/models", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return list(json.loads(response.read())["data"])
    except (OSError, ValueError, KeyError):  # refused, reset, timed out, HTTP errors, not JSON
        return None


def wait_until_serving(jobs, job_id: str, timeout: float = 180.0, poll: float = 0.25) -> list[dict]:
    """Wait until the deploy job ``job_id`` answers ``/v1/models``; return the served models.

    Raises :class:`ServerError` (with the end of the job's log) when the job ends first or ``timeout``
    seconds pass."""
    deadline = time.monotonic() + timeout
    job = jobs.get(job_id)
    url, key = base_url(job.argv), api_key(job.argv)
    while True:
        models = served_models(url, key)
        if models is not None:
            return models
        job = jobs.get(job_id)
        if job.status != "running":
            raise ServerError(f"the server ended ({job.status}, exit code {job.exit_code}) before it answered at "
                              f"{url}:\n{jobs.log_tail(job_id, lines=30)}")
        if time.monotonic() > deadline:
            raise ServerError(f"the server did not answer at {url} within {timeout:.0f} s:\n"
                              f"{jobs.log_tail(job_id, lines=30)}")
        time.sleep(poll)


def running_servers(jobs, title_prefix: str = "") -> list:
    """The running ``deploy`` jobs whose title starts with ``title_prefix``, newest first (from any UI
    process: jobs are read back from disk)."""
    return [job for job in jobs.list()
            if job.command == "deploy" and job.status == "running" and (job.title or "").startswith(title_prefix)]


class ServerOwner:
    """The deploy jobs one part of the UI owns: started here or adopted from an earlier UI process.

    Every owned server still running is stopped when this process exits (``atexit``; the handler runs on
    a normal exit, Ctrl-C and ``sys.exit``, not when the process is killed: the next UI finds such a server
    with :func:`running_servers` and adopts or stops it).
    """

    def __init__(self, jobs, title_prefix: str, stop_timeout: float = 15.0):
        self.jobs = jobs
        self.title_prefix = title_prefix
        self.stop_timeout = stop_timeout
        self._owned: set[str] = set()
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def start(self, values: dict, title: str = ""):
        """Start ``swiftkit deploy`` with ``values`` as a job titled ``title_prefix + title``; return the job."""
        job = self.jobs.start("deploy", values, title=self.title_prefix + title)
        self.adopt(job.id)
        return job

    def adopt(self, job_id: str) -> None:
        """Own ``job_id`` (a server an earlier UI process left running): it is stopped when this process exits."""
        with self._lock:
            self._owned.add(job_id)

    def adopt_running(self) -> list:
        """Adopt every running server with this owner's title prefix; return them, newest first."""
        found = running_servers(self.jobs, self.title_prefix)
        for job in found:
            self.adopt(job.id)
        return found

    def running(self) -> list:
        """The running servers with this owner's title prefix, newest first."""
        return running_servers(self.jobs, self.title_prefix)

    def stop(self, job_id: str):
        """Stop one server (SIGTERM, then SIGKILL after ``stop_timeout``); return its job."""
        with self._lock:
            self._owned.discard(job_id)
        return self.jobs.stop(job_id, timeout=self.stop_timeout)

    def stop_all(self) -> None:
        """Stop every owned server that still runs."""
        with self._lock:
            owned, self._owned = sorted(self._owned), set()
        for job_id in owned:
            try:
                if self.jobs.get(job_id).status == "running":
                    self.jobs.stop(job_id, timeout=self.stop_timeout)
            except (OSError, KeyError, ValueError):  # its record is gone: nothing left to stop
                continue
