"""`swiftkit deploy` against a careless or hostile client: bad values get a 400 naming the field,
a client cannot stall the others, failures never look like success, shutdown answers 503.

Each server is real (uvicorn on 127.0.0.1, a tiny random model) and is driven over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from served import KEY, Served, get_json, post, seconds, stream_events, wait_idle

pytestmark = pytest.mark.serial  # latencies are measured: run alone, not beside another test

HI = [{"role": "user", "content": "Hello there"}]
LONG = 480  # tokens: the tiny model's context is 512


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    server = Served(model=str(tiny_model_dir("llama", "chatml")), api_key=KEY, max_new_tokens=16,
                    max_batch_size=4, max_body_bytes=8 * 1024 * 1024, max_request_sequences=32)
    yield server
    server.stop()


def chat(served, **body):
    return post(served.url + "/v1/chat/completions", {"model": served.model, "messages": HI, **body})


def raw_chat(served, text: str) -> tuple[int, dict]:
    """A chat body whose last field is ``text`` verbatim (JSON the json module would not write)."""
    head = json.dumps({"model": served.model, "messages": HI})[:-1]
    return post(served.url + "/v1/chat/completions", (head + ", " + text + "}").encode())


@pytest.mark.parametrize(("text", "param", "says"), [
    ('"temperature": NaN', "temperature", "finite"),
    ('"top_p": NaN', "top_p", "finite"),
    ('"repetition_penalty": Infinity', "repetition_penalty", "finite"),
    ('"repetition_penalty": -Infinity', "repetition_penalty", "finite"),
    ('"seed": 1208925819614629174706176', "seed", "less than or equal"),
    ('"max_tokens": 1e400', "max_tokens", "integer"),
    ('"n": true', "n", "integer"),
    ('"response_format": {"type": "json_object"}', "response_format", "json_object"),
    ('"response_format": "json"', "response_format", "should be an object"),
    ('"max_token": 5', "max_token", "not a field"),
    ('"tool_choice": "required"', "tool_choice", "not supported"),
    ('"logit_bias": {"12": 5}', "logit_bias", "not supported"),
])
def test_bad_values_are_400s_naming_the_field(served, text, param, says):
    status, body = raw_chat(served, text)
    assert status == 400, body
    assert body["error"]["param"] == param and says in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("raw", "says"), [
    (b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}', "surrogate"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "a\\udfffb"}]}', "surrogate"),
    (b'{"model": "m", "messages": ' + b"[" * 6000 + b"]" * 6000 + b"}", "nested deeper than 200"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x", "extra": '
     + b"[" * 100 + b"]" * 100 + b"}]}", "deeper than 64 levels (max_json_depth)"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}]', "not valid JSON"),
])
def test_malformed_json_is_a_400_not_a_500(served, raw, says):
    status, body = post(served.url + "/v1/chat/completions", raw)
    assert status == 400, body
    assert says in body["error"]["message"] and body["error"]["code"] == "invalid_json"


def test_a_lone_surrogate_in_a_completion_prompt_is_a_400(served):
    raw = json.dumps({"model": served.model, "prompt": ["ok", "\ud800"]}).encode()  # json writes \ud800
    status, body = post(served.url + "/v1/completions", raw)
    assert status == 400 and "surrogate" in body["error"]["message"]


def test_a_subnormal_temperature_decodes_greedily(served):
    status, tiny = chat(served, temperature=1e-310, max_tokens=8)
    assert status == 200, tiny
    _, greedy = chat(served, temperature=0, max_tokens=8)
    assert tiny["choices"][0]["message"]["content"] == greedy["choices"][0]["message"]["content"]


def test_too_many_sequences_is_refused_before_any_work(served):
    rows = served.scheduler.stats["rows"]
    status, body = post(served.url + "/v1/completions", {"model": served.model, "prompt": ["a"] * 8, "n": 8})
    assert status == 400 and body["error"]["code"] == "too_many_sequences" and "64 generations" in \
        body["error"]["message"]
    assert served.scheduler.stats["rows"] == rows
    status, body = post(served.url + "/v1/completions", {"model": served.model, "prompt": ["a"] * 4, "n": 8,
                                                          "max_tokens": 2})
    assert status == 200 and len(body["choices"]) == 32


def test_openapi_documents_the_request_bodies(served):
    spec = get_json(served.url + "/openapi.json")
    for path, name in (("/v1/chat/completions", "ChatCompletionBody"), ("/v1/completions", "CompletionBody")):
        post_op = spec["paths"][path]["post"]
        assert post_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(name)
        assert "400" in post_op["responses"] and "503" in post_op["responses"]
    chat_body = spec["components"]["schemas"]["ChatCompletionBody"]
    assert chat_body["additionalProperties"] is False
    temperature = next(t for t in chat_body["properties"]["temperature"]["anyOf"] if t.get("type") == "number")
    assert (temperature["minimum"], temperature["maximum"]) == (0, 2)
    assert "messages" in chat_body["required"]


def test_health_stays_fast_while_huge_prompts_are_tokenized(served):
    text = "word " * (3_900_000 // 5)
    body = {"model": served.model, "messages": [{"role": "user", "content": text}], "max_tokens": 1}
    with ThreadPoolExecutor(4) as pool:
        posts = [pool.submit(chat, served, **body) for _ in range(4)]
        time.sleep(0.2)
        worst = 0.0
        while not all(p.done() for p in posts):
            worst = max(worst, seconds(lambda: get_json(served.url + "/health")))
            time.sleep(0.05)
    assert [p.result()[0] for p in posts] == [400] * 4  # far over the 512-token context
    assert all(p.result()[1]["error"]["code"] == "context_length_exceeded" for p in posts)
    assert worst < 0.5, f"/health took {worst:.2f} s while prompts were tokenized"


def test_a_stream_keeps_flowing_while_a_huge_prompt_arrives(served):
    """The tokenizer is shared under one lock: a prompt that cannot fit is refused before it is
    tokenized, so the other clients' generation never waits seconds for it."""
    huge = {"model": served.model, "messages": [{"role": "user", "content": "word " * (3_900_000 // 5)}]}
    refused: list = []
    threading.Timer(0.2, lambda: refused.append(post(served.url + "/v1/chat/completions", huge))).start()
    gaps, last = [], time.perf_counter()
    for _ in stream_iter(served, {"model": served.model, "messages": HI, "max_tokens": LONG}):
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    assert refused and refused[0][0] == 400 and "counted without tokenizing" in refused[0][1]["error"]["message"]
    assert max(gaps[1:]) < 0.5, f"the stream stalled {max(gaps[1:]):.2f} s while the huge prompt arrived"


def stream_iter(served, body):
    """The stream's events as they arrive (a generator over one live connection)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    conn.request("POST", "/v1/chat/completions", json.dumps({**body, "stream": True}),
                 {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    response = conn.getresponse()
    try:
        while (line := response.fp.readline()) and b"[DONE]" not in line:
            if line.startswith(b"data: "):
                yield json.loads(line[6:])
    finally:
        conn.close()


def test_a_dropped_request_stops_generating(served):
    full = seconds(lambda: chat(served, max_tokens=LONG, temperature=0))
    cancelled = served.scheduler.stats["cancelled"]

    def hang_up():
        import http.client
        import socket

        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
        body = json.dumps({"model": served.model, "messages": HI, "max_tokens": LONG, "temperature": 0})
        conn.request("POST", "/v1/chat/completions", body,
                     {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
        time.sleep(min(0.2, full / 5))
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()

    hang_up()
    idle_after = wait_idle(served.scheduler)
    assert served.scheduler.stats["cancelled"] == cancelled + 1
    assert idle_after < full / 2, f"the dropped request ran on for {idle_after:.2f} s (a full one: {full:.2f} s)"
    assert chat(served, max_tokens=2)[0] == 200


def test_a_dropped_stream_stops_generating(served):
    full = seconds(lambda: chat(served, max_tokens=LONG, temperature=0))
    status, events = stream_events(served.port, "/v1/chat/completions",
                                   {"model": served.model, "messages": HI, "max_tokens": LONG}, stop_after=2)
    assert status == 200 and len(events) == 2
    hung_up = time.perf_counter()
    idle_after = wait_idle(served.scheduler)
    took = time.perf_counter() - hung_up
    assert took < full / 2, f"the dropped stream ran on for {took:.2f} s (a full reply: {full:.2f} s)"
    assert idle_after <= took
    assert chat(served, max_tokens=2)[0] == 200


def test_api_key_from_a_file_and_the_environment(tiny_model_dir, tmp_path, monkeypatch):
    from swiftkit.config.commands import DeployConfig
    from swiftkit.core.errors import ConfigError
    from swiftkit.recipes.deploy import api_key

    model = str(tiny_model_dir("llama", "chatml"))
    key_file = tmp_path / "key.txt"
    key_file.write_text("sk-from-file\n")
    monkeypatch.setenv("SWIFTKIT_API_KEY", "sk-from-env")
    def key(**flags):
        return api_key(DeployConfig.from_flat({"model": model, **flags}).deploy)

    assert key(api_key_file=str(key_file)) == "sk-from-file"
    assert key() == "sk-from-env"
    assert key(api_key="sk-flag") == "sk-flag"
    with pytest.raises(ConfigError, match="api_key_file.*cannot be read"):
        key(api_key_file=str(tmp_path / "missing"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="first line is empty"):
        key(api_key_file=str(empty))

    server = Served(model=model, api_key_file=str(key_file), max_new_tokens=2)
    try:
        body = {"model": server.model, "messages": HI}
        assert post(server.url + "/v1/chat/completions", body, key="sk-from-env")[0] == 401
        assert post(server.url + "/v1/chat/completions", body, key="sk-from-fil")[0] == 401
        assert post(server.url + "/v1/chat/completions", body, key=None)[0] == 401
        assert post(server.url + "/v1/chat/completions", body, key="sk-from-file")[0] == 200
    finally:
        server.stop()


def test_listening_beyond_loopback_without_a_key_warns(tiny_model_dir, monkeypatch, capsys):
    from hosts import HOST

    from swiftkit.config.commands import DeployConfig
    from swiftkit.recipes.deploy import DeployRecipe, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    monkeypatch.delenv("SWIFTKIT_API_KEY", raising=False)
    recipe = DeployRecipe(DeployConfig.from_flat({"model": str(tiny_model_dir("llama", "chatml")),
                                                  "host": "0.0.0.0"}), HOST)
    recipe.setup()
    try:
        recipe.app()
        assert "WARNING: deploy listens on 0.0.0.0" in capsys.readouterr().err
        monkeypatch.setenv("SWIFTKIT_API_KEY", "sk-x")
        recipe.setup()
        recipe.app()
        assert "WARNING" not in capsys.readouterr().err
    finally:
        recipe.scheduler.close()


@pytest.fixture
def positional(tiny_model_dir):
    """GPT-2 has learned positions: generating past its 512 fails inside the model, a real failure."""
    server = Served(model=str(tiny_model_dir("gpt2", "chatml")), max_model_len=4096, max_new_tokens=16)
    yield server
    server.stop()


def test_a_generation_that_fails_mid_stream_ends_with_an_error_event(positional):
    body = {"model": positional.model, "messages": HI, "max_tokens": 700, "temperature": 0}
    status, events = stream_events(positional.port, "/v1/chat/completions", body, key=None)
    assert status == 200  # the headers went out before the failure
    chunks = [e for e in events if isinstance(e, dict)]
    assert "error" in chunks[-1] and chunks[-1]["error"]["type"] == "server_error", chunks[-1]
    assert not any(c.get("choices") and c["choices"][0].get("finish_reason") for c in chunks[:-1])
    assert events[-1] == "[DONE]"
    status, body = post(positional.url + "/v1/chat/completions", {**body}, key=None)
    assert status == 500 and "error" in body  # never a 200 with a cut reply


def test_shutdown_drains_then_answers_503(tiny_model_dir):
    server = Served(model=str(tiny_model_dir("llama", "chatml")), max_batch_size=1, shutdown_timeout=0.5,
                    max_new_tokens=LONG)
    body = {"model": server.model, "messages": HI, "temperature": 0}
    results: list = []

    def ask():
        try:
            results.append(post(server.url + "/v1/chat/completions", body, key=None))
        except OSError as exc:  # a dropped connection: what must not happen
            results.append((0, {"error": {"message": repr(exc)}}))

    streamed: list = []
    clients = [threading.Thread(target=ask) for _ in range(6)]
    clients.append(threading.Thread(target=lambda: streamed.append(
        stream_events(server.port, "/v1/chat/completions", body, key=None))))
    for t in clients:
        t.start()
    time.sleep(0.3)  # all queued behind one another (one row per batch)
    started = time.perf_counter()
    server.stop()
    for t in clients:
        t.join(60)
    took = time.perf_counter() - started
    statuses = sorted(status for status, _ in results)
    assert set(statuses) <= {200, 503} and 503 in statuses, results
    for status, reply in results:
        if status == 503:
            assert reply["error"]["code"] == "shutting_down"
    _, events = streamed[0]
    finished = [e for e in events if isinstance(e, dict) and e.get("choices") and e["choices"][0]["finish_reason"]]
    assert finished or events[-2]["error"]["code"] == "shutting_down"
    assert took < 15, f"shutdown took {took:.1f} s with a 0.5 s drain"
