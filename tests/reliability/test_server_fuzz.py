"""Property-based fuzzing of a live `swiftkit deploy` from its own `/openapi.json`.

Schemathesis generates request bodies from the served schema: valid ones (which must get a 200 or
a 4xx the server explains) and invalid ones (which must get a 4xx). No case may get a 5xx, and the
server must answer /health and a plain request afterwards. The number of cases is bounded
(``CASES`` per endpoint and mode) and the generation is derandomized, so a run is repeatable.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from served import KEY, Served, get_json, post, stream_events

CASES = 60
ENDPOINTS = ("/v1/chat/completions", "/v1/completions")


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    server = Served(model=str(tiny_model_dir("llama", "chatml")), api_key=KEY, max_new_tokens=8, max_model_len=64,
                    max_batch_size=8, max_request_sequences=16, batch_wait_ms=0)
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_generated_body_gets_a_5xx(served, path, mode):
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    operation = schema[path]["POST"]
    generation = schemathesis.GenerationMode(mode)
    seen: dict[int, int] = {}
    failures: list[str] = []

    @settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=generation), real_model=st.booleans())
    def run(case, real_model):
        if real_model and isinstance(case.body, dict) and mode == "positive":
            case.body["model"] = served.model  # reach generation, not only the unknown-model 404
        response = case.call(base_url=served.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            failures.append(f"{response.status_code} for {json.dumps(case.body)[:300]}: {response.text[:300]}")
        elif response.status_code >= 400:
            error = response.json()["error"]
            assert error["message"] and error["type"], response.text

    run()
    print(f"{path} {mode}: {sum(seen.values())} cases, statuses {dict(sorted(seen.items()))}")
    assert not failures, "\n".join(failures[:5])
    assert sum(seen.values()) >= CASES // 2
    if mode == "negative":
        assert set(seen) <= {400, 404, 413}, seen
    assert get_json(served.url + "/health")["status"] == "ok"
    assert post(served.url + "/v1/chat/completions",
                {"model": served.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})[0] == 200


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)  # any Unicode but lone surrogates
SAMPLING = st.fixed_dictionaries({}, optional={
    "temperature": st.floats(0, 2), "top_p": st.floats(0, 1, exclude_min=True), "top_k": st.integers(-1, 100),
    "repetition_penalty": st.floats(0.5, 2), "seed": st.integers(-(2**63), 2**64 - 1),
    "max_tokens": st.integers(1, 8), "stop": st.lists(TEXT.filter(bool), max_size=3), "n": st.integers(1, 3),
})


def test_generated_valid_requests_all_reach_generation(served):
    """Bodies inside every rule (any Unicode text, any in-range sampling settings) are all answered
    with a 200, or a 400 for a prompt over the 64-token context: the rules the schema cannot express
    do not hide crashes in generation."""
    seen: dict[str, int] = {}

    @settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(sampling=SAMPLING, chat=st.booleans(), stream=st.booleans(),
           turns=st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), TEXT), min_size=1, max_size=3))
    def run(sampling, chat, stream, turns):
        body = {"model": served.model, **sampling}
        if stream:
            body.update(stream=True, n=1)
        if chat:
            body["messages"] = [{"role": role, "content": text} for role, text in turns] + \
                [{"role": "user", "content": turns[-1][1]}]
            path = "/v1/chat/completions"
        else:
            body["prompt"] = [text or "x" for _, text in turns][:1 if stream else None]  # a stream: one prompt
            body["n"] = min(body.get("n", 1), 16 // len(turns))
            path = "/v1/completions"
        status, reply = stream_events(served.port, path, body) if stream else post(served.url + path, body)
        error = (reply[0] if stream else reply).get("error") if status != 200 else None
        if status == 400 and error and error["code"] == "context_length_exceeded":
            status = "400 context_length_exceeded"  # the one refusal allowed: the context is 64 tokens
        key = f"{path} {'stream' if stream else 'plain'} {status}"
        seen[key] = seen.get(key, 0) + 1
        assert status in (200, "400 context_length_exceeded"), (body, reply)
        if status != 200:
            return
        if stream:
            assert reply[-1] == "[DONE]" and all("error" not in e for e in reply[:-1] if isinstance(e, dict)), reply
        else:
            assert len(reply["choices"]) == body.get("n", 1) * (1 if chat else len(body["prompt"]))

    run()
    print(f"valid requests: {dict(sorted(seen.items()))}")
    assert sum(seen.values()) == CASES
    assert sum(v for k, v in seen.items() if k.endswith(" 200")) >= CASES // 2  # most reach generation
