"""`swiftkit deploy` serving a trained checkpoint, driven with the official `openai` client.

The server runs in a thread of this process (uvicorn on 127.0.0.1, a free port) with the base
model and two LoRA adapters: `tuned` (trained by `swiftkit sft`) and `loud` (the same adapter with
large random LoRA weights, so its replies differ from the base model's).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from hosts import HOST, registries, templates

KEY = "sk-test-key"
HI = [{"role": "user", "content": "Hello! Tell me something."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cfg):
    """``(recipe, uvicorn server, thread)``: the deploy server for ``cfg`` running in a thread."""
    from swiftkit.recipes.deploy import DeployRecipe

    recipe = DeployRecipe(cfg, HOST)
    recipe.setup()
    server = recipe.server()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    return recipe, server, thread


def perturbed_copy(ckpt, dest):
    """A copy of the LoRA checkpoint ``ckpt`` with large random lora_B weights."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(ckpt, dest)
    path = dest / "adapter_model.safetensors"
    weights = load_file(path)
    gen = torch.Generator().manual_seed(3)
    for name, value in weights.items():
        if "lora_B" in name:
            weights[name] = torch.randn(value.shape, generator=gen) * 0.5
    save_file(weights, path)
    return dest


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    from swiftkit.config.commands import DeployConfig

    loud = perturbed_copy(trained, tmp_path_factory.mktemp("loud") / "checkpoint-2")
    port = free_port()
    cfg = DeployConfig.from_flat({
        "adapters": [f"tuned={trained}", f"loud={loud}"], "served_model_name": "base", "api_key": KEY,
        "port": port, "max_new_tokens": 12, "max_batch_size": 16, "batch_wait_ms": 20,
        "max_body_bytes": 64 * 1024,
    })
    recipe, server, thread = start_server(cfg)
    yield {"url": f"http://127.0.0.1:{port}", "recipe": recipe, "loud": loud}
    server.should_exit = True
    thread.join(30)


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served["url"] + "/v1", api_key=KEY, max_retries=0, timeout=60)


def reference(served, model, messages, **gen):
    """The reply of a plain engine loaded independently with only ``model``'s adapter."""
    from swiftkit.config import InferConfig
    from swiftkit.inference import TransformersEngine, load_for_inference

    path = {"tuned": served["recipe"].config.adapter.adapters[0].split("=", 1)[1], "loud": str(served["loud"]),
            "base": served["recipe"].config.adapter.adapters[0].split("=", 1)[1]}[model]
    peft_model, template, _ = load_for_inference(InferConfig.from_flat({"adapters": [path]}), registries=registries())
    engine = TransformersEngine(peft_model, template)
    if model == "base":
        with peft_model.disable_adapter():
            return engine.generate([messages], **gen)[0], template
    return engine.generate([messages], **gen)[0], template


def post(url, body: bytes, key=KEY, content_type="application/json"):
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {key}"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_models_lists_the_base_model_and_each_adapter(client):
    listed = client.models.list().data
    assert [m.id for m in listed] == ["base", "tuned", "loud"]
    assert [getattr(m, "parent", None) for m in listed] == [None, "base", "base"]


def test_chat_uses_the_adapter_named_by_model(served, client):
    replies = {}
    for model in ("base", "tuned", "loud"):
        out = client.chat.completions.create(model=model, messages=HI, max_tokens=8, temperature=0)
        expected, template = reference(served, model, HI, max_new_tokens=8)
        assert out.object == "chat.completion" and out.model == model
        assert out.choices[0].message.content == expected
        assert out.usage.prompt_tokens == len(template.encode_prompt(HI))
        assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
        assert out.choices[0].finish_reason in ("stop", "length")
        if out.choices[0].finish_reason == "length":
            assert out.usage.completion_tokens == 8
        replies[model] = expected
    assert replies["loud"] != replies["base"]  # the adapter really changes what is generated


def test_stream_gives_the_same_text_and_ends_with_usage(client):
    whole = client.chat.completions.create(model="loud", messages=HI, max_tokens=10)
    chunks = list(client.chat.completions.create(model="loud", messages=HI, max_tokens=10, stream=True,
                                                 stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_stop_strings_cut_the_reply_in_both_modes(client):
    full = client.chat.completions.create(model="loud", messages=HI, max_tokens=12).choices[0].message.content
    assert len(full) >= 6, full
    stop = full[3:5]
    head = full[:full.find(stop)]
    out = client.chat.completions.create(model="loud", messages=HI, max_tokens=12, stop=[stop, "never-here"])
    assert out.choices[0].message.content == head and out.choices[0].finish_reason == "stop"
    assert out.usage.completion_tokens < 12
    chunks = client.chat.completions.create(model="loud", messages=HI, max_tokens=12, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == head


def test_seed_n_and_completions(client):
    kw = {"model": "loud", "messages": HI, "max_tokens": 8, "temperature": 1.0, "seed": 7}
    first = client.chat.completions.create(**kw).choices[0].message.content
    assert client.chat.completions.create(**kw).choices[0].message.content == first
    two = client.chat.completions.create(model="tuned", messages=HI, max_tokens=4, n=2)
    assert [c.index for c in two.choices] == [0, 1]

    out = client.completions.create(model="tuned", prompt="The sea is", max_tokens=5)
    assert out.object == "text_completion" and isinstance(out.choices[0].text, str)
    assert 1 <= out.usage.completion_tokens <= 5 and out.usage.prompt_tokens > 0
    streamed = client.completions.create(model="tuned", prompt="The sea is", max_tokens=5, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == out.choices[0].text


def test_wrong_key_and_unknown_model_are_openai_errors(served, client):
    bad = openai.OpenAI(base_url=served["url"] + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="base", messages=HI)
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="tunde", messages=HI)
    message = str(err.value)
    assert "tunde" in message and all(name in message for name in ("base", "tuned", "loud"))


def test_malformed_bodies_get_4xx_in_the_openai_shape_and_the_server_stays_up(served):
    url = served["url"] + "/v1/chat/completions"
    ok = {"model": "base", "messages": HI, "max_tokens": 2}
    cases = [
        (b"{not json", 400, None),
        (json.dumps({"model": "base"}).encode(), 400, "messages"),
        (json.dumps({"messages": HI}).encode(), 400, "model"),
        (json.dumps({**ok, "temperature": "hot"}).encode(), 400, "temperature"),
        (json.dumps({**ok, "messages": [{"role": "robot", "content": "x"}]}).encode(), 400, "messages[0].role"),
        (json.dumps({**ok, "top_logprobs": 2}).encode(), 400, "top_logprobs"),
        (json.dumps({**ok, "logprobs": True, "stream": True}).encode(), 400, "logprobs"),
        (json.dumps({**ok, "max_tokens": 10**6}).encode(), 400, "max_tokens"),
        (json.dumps({**ok, "messages": [{"role": "user", "content": "x" * 100_000}]}).encode(), 413, None),
    ]
    for body, status, param in cases:
        code, payload = post(url, body)
        assert code == status, (body[:60], payload)
        assert set(payload["error"]) == {"message", "type", "param", "code"} and payload["error"]["message"]
        assert payload["error"]["param"] == param
    code, payload = post(served["url"] + "/v1/nowhere", b"{}")
    assert code == 404 and "error" in payload
    assert post(url, json.dumps(ok).encode(), key="nope")[0] == 401
    code, payload = post(url, json.dumps(ok).encode())
    assert code == 200 and payload["choices"][0]["message"]["role"] == "assistant"


def test_64_concurrent_requests_all_succeed_and_are_batched(served, client):
    prompts = [[{"role": "user", "content": f"Count to {i % 4}"}] for i in range(64)]
    expected = {i: client.chat.completions.create(model="tuned", messages=prompts[i], max_tokens=6)
                .choices[0].message.content for i in range(4)}
    before = served["recipe"].scheduler.stats["rows"]

    def ask(i):
        return client.chat.completions.create(model="tuned", messages=prompts[i], max_tokens=6)

    with ThreadPoolExecutor(64) as pool:
        outs = list(pool.map(ask, range(64)))
    assert [o.choices[0].message.content for o in outs] == [expected[i % 4] for i in range(64)]
    stats = json.loads(urllib.request.urlopen(served["url"] + "/health", timeout=10).read())["scheduler"]
    assert stats["rows"] - before == 64
    assert 1 < stats["max_batch_rows"] <= 16


def test_cli_serves_and_shuts_down_cleanly_on_sigint(trained):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swiftkit.cli.main", "deploy", "--adapters", str(trained), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal, even in a background job
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read())
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        assert health["models"][1] == "checkpoint-2" and len(health["models"]) == 2
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err  # the shell's code for SIGINT, after a clean shutdown
    assert "serving" in err and "stopped" in err and "Traceback" not in err


# -- tool calls: a tiny Qwen2.5-style model taught to answer one question with a call ---------------

WEATHER_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
WEATHER = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def tool_server(tiny_model_dir, tmp_path_factory):
    """A server for a tiny model overfit (plain torch) on one reply that calls get_weather."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.config.commands import DeployConfig
    from swiftkit.templates import get_template

    src = tiny_model_dir("llama", "qwen25")
    tok, model = AutoTokenizer.from_pretrained(src), AutoModelForCausalLM.from_pretrained(src)
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    row = get_template(tok, registry=templates()).encode(
        {"messages": [*WEATHER, {"role": "assistant", "content": "", "tool_calls": [call]}],
         "tools": WEATHER_TOOLS})
    ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    dest = tmp_path_factory.mktemp("toolmodel")
    model.save_pretrained(dest)
    tok.save_pretrained(dest)

    port = free_port()
    _, server, thread = start_server(DeployConfig.from_flat(
        {"model": str(dest), "served_model_name": "tools", "port": port, "max_new_tokens": 80}))
    prompt = tok.apply_chat_template(WEATHER, tools=WEATHER_TOOLS, add_generation_prompt=True, tokenize=False)
    yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=60), prompt
    server.should_exit = True
    thread.join(30)


def test_a_generated_tool_call_comes_back_as_tool_calls(tool_server):
    tool_server, prompt = tool_server
    raw = tool_server.completions.create(model="tools", prompt=prompt, max_tokens=80).choices[0].text
    assert raw.strip().startswith("<tool_call>") and '"get_weather"' in raw  # what the model really generates

    out = tool_server.chat.completions.create(model="tools", messages=WEATHER, tools=WEATHER_TOOLS)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}

    chunks = list(tool_server.chat.completions.create(model="tools", messages=WEATHER, tools=WEATHER_TOOLS,
                                                      stream=True))
    streamed = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.function.name, json.loads(tc.function.arguments)) for tc in streamed] == [
        (0, "get_weather", {"city": "Paris"})]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""

    plain = tool_server.chat.completions.create(model="tools", messages=WEATHER, tools=WEATHER_TOOLS,
                                                tool_choice="none", max_tokens=5)
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].finish_reason != "tool_calls"


def test_logprobs_through_the_openai_client(client):
    reply = client.chat.completions.create(model="base", messages=HI, max_tokens=4, logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens or reply.choices[0].finish_reason == "stop"
    assert content and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    assert all(t.top_logprobs[0].logprob == t.logprob for t in content)  # greedy picks the top token
