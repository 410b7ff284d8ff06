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
from served import KEY, Served, get_json, post

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
