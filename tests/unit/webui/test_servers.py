"""`swiftkit deploy` servers as web UI jobs: addresses and keys read from the command line, /v1/models asked over
real HTTP, real deploy jobs waited for, adopted by a later UI and stopped when the UI process exits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from swiftkit.recipes.deploy import API_KEY_ENV
from swiftkit.webui import servers
from swiftkit.webui.jobs import JobManager

MODELS = [{"id": "base", "object": "model", "parent": None}, {"id": "tuned", "object": "model", "parent": "base"}]


def test_flag_values_address_and_url_come_from_the_command_line():
    argv = ["swiftkit", "deploy", "--adapters", "a=/x", "--port", "9001", "--host=0.0.0.0", "--port=9002"]
    assert servers.flag_value(argv, "--adapters") == "a=/x"
    assert servers.flag_value(argv, "--port") == "9002"  # the last one wins, as in argparse
    assert servers.flag_value(argv, "--api_key") is None
    assert servers.address(argv) == ("0.0.0.0", 9002)
    assert servers.base_url(argv) == "http://127.0.0.1:9002"  # an any-address bind is reached on loopback
    assert servers.address(["swiftkit", "deploy"]) == ("127.0.0.1", 8000)  # the CLI's defaults
    assert servers.base_url(["swiftkit", "deploy", "--host", "::1", "--port", "7"]) == "http://[::1]:7"


def test_the_api_key_is_read_as_deploy_reads_it(tmp_path, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\nsecond line\n")
    assert servers.api_key(["swiftkit", "deploy", "--api_key", "sk-flag", "--api_key_file", str(key_file)]) == "sk-flag"
    assert servers.api_key(["swiftkit", "deploy", "--api_key_file", str(key_file)]) == "sk-from-file"
    assert servers.api_key(["swiftkit", "deploy"]) is None
    (tmp_path / "empty").write_text("\n")
    assert servers.api_key(["swiftkit", "deploy", "--api_key_file", str(tmp_path / "empty")]) is None
    monkeypatch.setenv(API_KEY_ENV, "sk-env")
    assert servers.api_key(["swiftkit", "deploy"]) == "sk-env"


@pytest.fixture
def models_server():
    """A real HTTP server answering GET /v1/models with MODELS, 401 without ``Bearer sk-good``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.headers.get("Authorization") != "Bearer sk-good":
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"object": "list", "data": MODELS}).encode() if self.path == "/v1/models" else b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_served_models_asks_v1_models_and_is_none_while_nothing_answers(models_server):
    assert servers.served_models(models_server, "sk-good") == MODELS
    assert servers.served_models(models_server + "/", "sk-good") == MODELS
    assert servers.served_models(models_server, "sk-bad") is None  # 401
    assert servers.served_models(f"http://127.0.0.1:{servers.free_port()}", None) is None  # refused


def test_a_deploy_job_that_fails_is_reported_with_its_log(tmp_path):
    manager = JobManager(tmp_path / "state", tmp_path)
    owner = servers.ServerOwner(manager, "test: ")
    job = owner.start({"adapters": [str(tmp_path / "no-such-run")], "port": servers.free_port()}, title="broken")
    assert job.title == "test: broken" and job.command == "deploy"
    with pytest.raises(servers.ServerError) as err:
        servers.wait_until_serving(manager, job.id, timeout=120)
    message = str(err.value)
    assert "the server ended (failed, exit code 2)" in message and "no-such-run" in message
    assert servers.running_servers(manager) == []


def test_a_later_ui_adopts_a_running_server_and_stops_it_on_exit(tiny_model_dir, tmp_path):
    """One UI process starts a server and is killed (no exit handler runs); the next UI process finds the
    server running, uses it, and stops it when it exits normally."""
    model = tiny_model_dir("llama", "chatml")
    state, port = tmp_path / "state", servers.free_port()
    first = textwrap.dedent(f"""
        import os, signal
        from swiftkit.webui.jobs import JobManager
        from swiftkit.webui.servers import ServerOwner, wait_until_serving
        manager = JobManager({str(state)!r}, {str(tmp_path)!r})
        owner = ServerOwner(manager, "chat: ")
        job = owner.start({{"model": {str(model)!r}, "port": {port}, "served_model_name": "tiny"}}, title="tiny")
        print([m["id"] for m in wait_until_serving(manager, job.id, timeout=300)], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # as a UI killed without running its exit handlers
    """)
    out = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "['tiny']", out.stderr
    manager = JobManager(state, tmp_path)
    [job] = servers.running_servers(manager, "chat: ")
    assert [(m["id"], m["parent"]) for m in servers.served_models(servers.base_url(job.argv))] == [("tiny", None)]
    assert servers.running_servers(manager, "deploy: ") == []

    second = textwrap.dedent(f"""
        from swiftkit.webui.jobs import JobManager
        from swiftkit.webui.servers import ServerOwner
        owner = ServerOwner(JobManager({str(state)!r}, {str(tmp_path)!r}), "chat: ")
        print([job.id for job in owner.adopt_running()])
    """)  # exits normally: the exit handler stops what it adopted
    out = subprocess.run([sys.executable, "-c", second], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == repr([job.id]), out.stderr
    assert manager.get(job.id).status == "stopped"
    assert servers.served_models(servers.base_url(job.argv)) is None
    assert "[swiftkit] deploy: stopped" in manager.log_tail(job.id, 5)
