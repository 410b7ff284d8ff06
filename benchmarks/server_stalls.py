"""Can one client stall `swiftkit deploy` for everyone else? Three measurements against a live server.

    python benchmarks/server_stalls.py [--model smollm2-135m-instruct] [--port 8321]

1. ``/health`` latency while 4 clients each post a 3.9 MB chat prompt (the tokenizer's work must
   not run on the event loop).
   Also the worst gap between the events of a 200-token stream while one such prompt arrives
   (the engine's tokenizer is shared under a lock: a prompt that cannot fit must not hold it).
2. Latency of a 1-token request right after 3 clients each asked for 200 tokens and hung up
   (streams after their first chunk, plain requests after 0.5 s), next to the same request on the
   idle server (dropped requests must stop generating).
3. Status of a 392-byte ``/v1/completions`` body asking for 64 prompts x n=16 = 1,024 generations
   (the per-request sequence cap).
4. With ``--shutdown``: 10 clients each ask for 500 tokens one at a time (more than the 30 s grace
   period of work in all), the server gets SIGTERM 1 s later; what each client got: a 200, a 503, or
   a dropped connection (which must not happen).

The server runs as a child process (``python -m swiftkit.cli.main deploy``), so whichever swiftkit
is first on ``PYTHONPATH`` is measured. Prints one line per measurement plus a JSON summary.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def _post(url: str, body: dict, timeout: float = 600) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (ConnectionError, http.client.HTTPException) as exc:
        return 0, str(exc).encode()


def _get_seconds(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        response.read()
    return time.perf_counter() - start


def _start(model: str, port: int, *flags: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "swiftkit.cli.main", "deploy", "--model", model, "--port", str(port),
           "--max_new_tokens", "200", "--max_batch_size", "4", *flags]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            _get_seconds(f"http://127.0.0.1:{port}/health")
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start within 300 s")


def health_under_large_prompts(url: str, model: str) -> dict:
    prompt = "word " * (3_900_000 // 5)
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 1}
    idle = max(_get_seconds(url + "/health") for _ in range(3))
    statuses: list[int] = []
    posters = [threading.Thread(target=lambda: statuses.append(_post(url + "/v1/chat/completions", body)[0]))
               for _ in range(4)]
    for t in posters:
        t.start()
    worst = 0.0
    while any(t.is_alive() for t in posters):
        worst = max(worst, _get_seconds(url + "/health"))
        time.sleep(0.05)
    for t in posters:
        t.join()
    return {"health_idle_s": round(idle, 3), "health_worst_under_load_s": round(worst, 3),
            "large_prompt_statuses": sorted(statuses)}


def stream_gap_under_large_prompt(url: str, port: int, model: str) -> dict:
    huge = {"model": model, "messages": [{"role": "user", "content": "word " * (3_900_000 // 5)}], "max_tokens": 1}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/chat/completions", json.dumps({
        "model": model, "messages": [{"role": "user", "content": "Count from 1 to 1000, one number a line."}],
        "max_tokens": 200, "stream": True, "temperature": 0.0}), {"Content-Type": "application/json"})
    response = conn.getresponse()
    threading.Timer(0.3, lambda: _post(url + "/v1/chat/completions", huge)).start()
    worst, last = 0.0, time.perf_counter()
    while (line := response.fp.readline()) and b"[DONE]" not in line:
        if line.startswith(b"data:"):
            now = time.perf_counter()
            worst, last = max(worst, now - last), now
    conn.close()
    return {"stream_worst_gap_while_large_prompt_arrives_s": round(worst, 3)}


def _drop(port: int, model: str, stream: bool) -> None:
    """Ask for 200 tokens and hang up: a stream after its first content chunk, a plain request
    0.5 s after sending it."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Tell me a long story."}],
                       "max_tokens": 200, "stream": stream, "temperature": 0.0})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    if stream:
        response = conn.getresponse()
        seen = 0
        while seen < 2:  # the role chunk, then the first piece of text
            line = response.fp.readline()
            if not line:
                break
            if line.startswith(b"data:"):
                seen += 1
    else:
        time.sleep(0.5)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def small_request_after_drops(url: str, port: int, model: str, stream: bool) -> dict:
    small = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    start = time.perf_counter()
    _post(url + "/v1/chat/completions", small)
    idle = time.perf_counter() - start
    for _ in range(3):
        _drop(port, model, stream)
    start = time.perf_counter()
    status, _ = _post(url + "/v1/chat/completions", small)
    after = time.perf_counter() - start
    kind = "streams" if stream else "requests"
    return {"small_request_idle_s": round(idle, 3), f"small_request_after_dropped_{kind}_s": round(after, 3),
            f"small_request_after_dropped_{kind}_status": status}


def fan_out(url: str, model: str) -> dict:
    body = {"model": model, "prompt": ["a"] * 64, "n": 16, "max_tokens": 1}
    raw = json.dumps(body).encode()
    status, reply = _post(url + "/v1/completions", body)
    answer = json.loads(reply) if reply.startswith(b"{") else {}
    return {"fan_out_body_bytes": len(raw), "fan_out_status": status,
            "fan_out_choices": len(answer.get("choices", [])),
            "fan_out_error": (answer.get("error") or {}).get("message")}


def shutdown_outcomes(model_name: str, port: int) -> dict:
    proc = _start(model_name, port, "--max_batch_size", "1")
    url = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(url + "/v1/models", timeout=60) as response:
        model = json.loads(response.read())["data"][0]["id"]
    ask_long = [{"role": "user", "content": "Count from 1 to 1000, one number a line."}]
    body = {"model": model, "messages": ask_long, "max_tokens": 500, "temperature": 0.0}
    outcomes: list[str] = []

    def ask():
        status, _ = _post(url + "/v1/chat/completions", body)
        outcomes.append(str(status) if status else "dropped")

    clients = [threading.Thread(target=ask) for _ in range(10)]
    for t in clients:
        t.start()
    time.sleep(1)
    start = time.perf_counter()
    proc.terminate()
    for t in clients:
        t.join()
    proc.wait(120)
    counts = {k: outcomes.count(k) for k in sorted(set(outcomes))}
    return {"shutdown_outcomes": counts, "shutdown_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--port", type=int, default=8321)
    parser.add_argument("--shutdown", action="store_true", help="also measure 4 (about a minute more)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    proc = _start(args.model, args.port)
    url = f"http://127.0.0.1:{args.port}"
    results: dict = {}
    try:
        with urllib.request.urlopen(url + "/v1/models", timeout=60) as response:
            model = json.loads(response.read())["data"][0]["id"]
        measures = (lambda: health_under_large_prompts(url, model),
                    lambda: stream_gap_under_large_prompt(url, args.port, model),
                    lambda: small_request_after_drops(url, args.port, model, stream=True),
                    lambda: small_request_after_drops(url, args.port, model, stream=False),
                    lambda: fan_out(url, model))
        for measure in (m() for m in measures):
            for key, value in measure.items():
                print(f"{key}: {value}")
            results.update(measure)
    finally:
        proc.terminate()
        proc.wait(60)
    if args.shutdown:
        measure = shutdown_outcomes(args.model, args.port + 1)
        for key, value in measure.items():
            print(f"{key}: {value}")
        results.update(measure)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
