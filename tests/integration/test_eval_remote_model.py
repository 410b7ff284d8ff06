"""RemoteEvalModel against a real `swiftkit deploy` server on a tiny model: the same numbers and
replies as LocalEvalModel on the same model, and clear errors from servers that cannot score."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from hosts import templates
from test_deploy import free_port, start_server

from swiftkit.evaluate.local import LocalEvalModel
from swiftkit.evaluate.model import EvalModel, LogprobsUnavailable
from swiftkit.evaluate.remote import EvalServerError, RemoteEvalModel

REQUESTS = [("The capital of France is", " Paris"), ("The quick bro", "wn fox"),  # "bro"+"wn": one token
            ("Hello! How can I", " help you today?"), ("Numbers: 1 2", " 3 4 5")]
TEXTS = ["What is the capital of France? Paris is the capital of France.", "def add(a, b):\n    return a + b\n"]
CONVERSATIONS = [[{"role": "user", "content": "Hello! How can I help you today?"}],
                 [{"role": "user", "content": "Write a poem about the sea."}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Numbers: 1 2 3"}]]


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    from swiftkit.config.commands import DeployConfig

    port = free_port()
    _, server, thread = start_server(DeployConfig.from_flat(
        {"model": str(tiny_model_dir("llama", "chatml")), "served_model_name": "tiny", "port": port,
         "max_new_tokens": 16}))
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def local(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.templates import get_template

    path = tiny_model_dir("llama", "chatml")
    return LocalEvalModel(AutoModelForCausalLM.from_pretrained(path).eval(),
                          get_template(AutoTokenizer.from_pretrained(path), registry=templates()), name="local")


def test_remote_scores_equal_local_scores(served, local):
    remote = RemoteEvalModel(served, None, concurrency=3)
    assert isinstance(remote, EvalModel) and remote.name == "tiny" and remote.render(CONVERSATIONS[0]) is None
    got, expected = remote.loglikelihood(REQUESTS), local.loglikelihood(REQUESTS)
    assert [t for t, _ in got] == pytest.approx([t for t, _ in expected], abs=1e-4)
    assert [g for _, g in got] == [g for _, g in expected]
    rolled, local_rolled = remote.rolling_loglikelihood(TEXTS), local.rolling_loglikelihood(TEXTS)
    assert [c for _, c in rolled] == [c for _, c in local_rolled] and all(c > 5 for _, c in rolled)
    assert [t for t, _ in rolled] == pytest.approx([t for t, _ in local_rolled], abs=1e-4)


def test_remote_replies_equal_local_greedy_replies(served, local):
    remote = RemoteEvalModel(served + "/v1", "tiny", concurrency=2)
    expected = local.generate(CONVERSATIONS, max_new_tokens=8)
    assert remote.generate(CONVERSATIONS, max_new_tokens=8) == expected
    assert any(expected), expected


def test_echo_with_logprobs_has_the_documented_shape(served):
    client = openai.OpenAI(base_url=served + "/v1", api_key="none", max_retries=0, timeout=60)
    prompt = "The capital of France is Paris"
    out = client.completions.create(model="tiny", prompt=prompt, echo=True, logprobs=2, max_tokens=0)
    choice = out.choices[0]
    lp = choice.logprobs
    assert choice.text == prompt and out.usage.completion_tokens == 0 and choice.finish_reason == "length"
    assert len(lp.tokens) == out.usage.prompt_tokens == len(lp.token_logprobs) == len(lp.text_offset) > 3
    assert "".join(lp.tokens) == prompt
    assert lp.text_offset == [len("".join(lp.tokens[:k])) for k in range(len(lp.tokens))]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v < 0 for v in lp.token_logprobs[1:])
    assert all(1 <= len(top) <= 2 and max(top.values()) >= v for top, v in zip(lp.top_logprobs[1:],
                                                                            lp.token_logprobs[1:]))

    more = client.completions.create(model="tiny", prompt=prompt, echo=True, logprobs=2, max_tokens=3)
    grown = more.choices[0]
    n = more.usage.prompt_tokens
    assert grown.text.startswith(prompt) and len(grown.logprobs.tokens) == n + more.usage.completion_tokens
    assert grown.logprobs.tokens[:n] == lp.tokens
    assert grown.logprobs.token_logprobs[:n] == pytest.approx(lp.token_logprobs, abs=1e-5)
    offsets = grown.logprobs.text_offset[n:]  # the reply's tokens start where the prompt ends
    assert offsets[0] == len(prompt) and offsets == sorted(offsets) and offsets[-1] < len(grown.text)


class RefusesLogprobs(BaseHTTPRequestHandler):
    """An OpenAI-compatible server without prompt log-probabilities (chat only, as many are)."""

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "chat-only", "object": "model"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._send(400, {"error": {"message": "echo with logprobs is not supported", "type": "invalid_request_error",
                                   "param": "logprobs", "code": None}})

    def _send(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_server_without_prompt_logprobs_says_so_with_its_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusesLogprobs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        remote = RemoteEvalModel(url)
        assert remote.name == "chat-only"
        for call in (lambda: remote.loglikelihood([("a", " b")]), lambda: remote.rolling_loglikelihood(["a b"])):
            with pytest.raises(LogprobsUnavailable) as err:
                call()
            message = str(err.value)
            assert url in message and "prompt log-probabilities" in message and "generative benchmarks" in message
    finally:
        server.shutdown()


def test_an_unreachable_server_is_one_line_naming_its_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EvalServerError) as err:
        RemoteEvalModel(url, "tiny").generate(CONVERSATIONS[:1], max_new_tokens=2)
    assert f"{url}/v1" in str(err.value) and "cannot reach" in str(err.value) and "\n" not in str(err.value)
