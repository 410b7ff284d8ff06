"""OpenAI request checks (errors name the field) and chat/completion requests through the engine."""

from __future__ import annotations

import pytest
from hosts import templates

from swiftkit.inference import openai
from swiftkit.inference.protocol import (
    ChatRequest,
    CompletionRequest,
    ProtocolError,
    SamplingDefaults,
)

HI = [{"role": "user", "content": "Hello!"}]


def chat(**body):
    return ChatRequest.from_dict({"model": "m", "messages": HI, **body})


@pytest.mark.parametrize(("body", "param", "text"), [
    ({"messages": HI}, "model", "'model' is required"),
    ({"model": "m"}, "messages", "'messages' is required"),
    ({"model": "m", "messages": []}, "messages", "non-empty"),
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "robot"),
    ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content", "required"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content",
     "must be an http"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content",
     "only text and image_url parts"),
    ({"model": "m", "messages": [{"role": "assistant", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}, "messages[0].content",
     "user messages only"),
    ({"model": "m", "messages": HI, "temperature": "hot"}, "temperature", "must be a number"),
    ({"model": "m", "messages": HI, "temperature": 3}, "temperature", "<= 2"),
    ({"model": "m", "messages": HI, "top_p": 0}, "top_p", "> 0"),
    ({"model": "m", "messages": HI, "max_tokens": 0}, "max_tokens", ">= 1"),
    ({"model": "m", "messages": HI, "max_tokens": 2.5}, "max_tokens", "integer"),
    ({"model": "m", "messages": HI, "n": True}, "n", "integer"),
    ({"model": "m", "messages": HI, "stop": ["", "x"]}, "stop", "non-empty string"),
    ({"model": "m", "messages": HI, "stream": "yes"}, "stream", "true or false"),
    ({"model": "m", "messages": HI, "n": 2, "stream": True}, "n", "stream"),
    ({"model": "m", "messages": HI, "top_logprobs": 3}, "top_logprobs", "needs .logprobs.: true"),
    ({"model": "m", "messages": HI, "tools": {"type": "function"}}, "tools", "list"),
])
def test_chat_request_errors_name_the_field(body, param, text):
    with pytest.raises(ProtocolError, match=text) as err:
        ChatRequest.from_dict(body)
    assert err.value.param == param and err.value.status == 400
    assert isinstance(err.value, ValueError)


def test_chat_request_values_and_server_defaults():
    defaults = SamplingDefaults(max_tokens=33, temperature=0.2, top_p=0.9, top_k=7, repetition_penalty=1.1)
    req = ChatRequest.from_dict({"model": "m", "messages": HI}, defaults)
    p = req.params
    assert (p.max_tokens, p.temperature, p.top_p, p.top_k, p.repetition_penalty) == (33, 0.2, 0.9, 7, 1.1)
    assert not req.max_tokens_given and req.n == 1 and not req.stream
    req = chat(max_completion_tokens=5, max_tokens=9, stop="END", seed=3, top_k=2, stream=True,
               stream_options={"include_usage": True})
    assert req.params.max_tokens == 5 and req.max_tokens_given  # max_completion_tokens wins
    assert req.params.stop == ("END",) and req.params.seed == 3 and req.params.top_k == 2
    assert req.stream and req.include_usage
    parts = [{"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief"}]},
             *HI]
    assert chat(messages=parts).messages[0] == {"role": "system", "content": "Be brief"}
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert chat(messages=[*HI, call, {"role": "tool", "content": "1"}]).messages[1]["content"] == ""


def test_completion_request():
    req = CompletionRequest.from_dict({"model": "m", "prompt": ["a", "b"], "max_tokens": 3, "echo": True})
    assert req.prompts == ["a", "b"] and req.params.max_tokens == 3 and req.echo
    with pytest.raises(ProtocolError) as err:
        CompletionRequest.from_dict({"model": "m", "prompt": [1, 2]})
    assert err.value.param == "prompt"
    with pytest.raises(ProtocolError, match="JSON object"):
        CompletionRequest.from_dict(["not", "an", "object"])


# -- through the engine --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ckpts(make_lora_run):
    return {"one": make_lora_run(seed=1), "two": make_lora_run(seed=2)}


@pytest.fixture(scope="module")
def engine(tiny, ckpts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.inference import TransformersEngine
    from swiftkit.templates import get_template

    eng = TransformersEngine(AutoModelForCausalLM.from_pretrained(tiny).eval(), get_template(
        AutoTokenizer.from_pretrained(tiny), registry=templates()))
    eng.add_model("base")
    eng.load_adapter("one", str(ckpts["one"]))
    eng.load_adapter("two", str(ckpts["two"]))
    return eng


def reference(tiny, ckpt, messages, n):
    """Greedy reply of a separately loaded model with only ``ckpt``'s adapter (or none)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.inference import TransformersEngine
    from swiftkit.templates import get_template

    model = AutoModelForCausalLM.from_pretrained(tiny)
    if ckpt is not None:
        model = PeftModel.from_pretrained(model, str(ckpt))
    return TransformersEngine(model.eval(), get_template(AutoTokenizer.from_pretrained(tiny), registry=templates())).generate(
        [messages], max_new_tokens=n)[0]


def test_each_request_gets_the_adapter_its_model_names(engine, tiny, ckpts):
    got = {name: openai.chat(engine, chat(model=name, max_tokens=8))["choices"][0]["message"]["content"]
           for name in ("two", "base", "one", "base")}
    assert got["base"] == reference(tiny, None, HI, 8)
    assert got["one"] == reference(tiny, ckpts["one"], HI, 8)
    assert got["two"] == reference(tiny, ckpts["two"], HI, 8)
    assert len(set(got.values())) == 3
    with pytest.raises(ProtocolError, match="served models: base, one, two") as err:
        openai.chat(engine, chat(model="three"))
    assert err.value.status == 404


def test_chat_usage_stop_and_length(engine):
    body = openai.chat(engine, chat(model="one", max_tokens=6))
    prompt = engine.prompt_ids(HI)
    assert body["object"] == "chat.completion"
    assert body["usage"]["prompt_tokens"] == len(prompt)
    assert body["usage"]["total_tokens"] == len(prompt) + body["usage"]["completion_tokens"]
    if body["choices"][0]["finish_reason"] == "length":
        assert body["usage"]["completion_tokens"] == 6
    text = openai.chat(engine, chat(model="one", max_tokens=16))["choices"][0]["message"]["content"]
    assert len(text) > 4, text
    cut = openai.chat(engine, chat(model="one", max_tokens=16, stop=text[2:4]))["choices"][0]
    assert cut["message"]["content"] == text[:text.find(text[2:4])] and cut["finish_reason"] == "stop"
    streamed = list(openai.chat_stream(engine, chat(model="one", max_tokens=16, stop=text[2:4], stream=True,
                                            stream_options={"include_usage": True})))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed if c["choices"]) == \
        cut["message"]["content"]
    assert streamed[-1]["usage"]["completion_tokens"] < 16


def test_too_many_tokens_and_seeded_sampling(engine):
    engine.max_model_len, saved = 40, engine.max_model_len
    try:
        with pytest.raises(ProtocolError, match="max_model_len") as err:
            openai.chat(engine, chat(model="base", max_tokens=39))
        assert err.value.param == "max_tokens"
        body = openai.chat(engine, chat(model="base"))  # the server default is lowered to fit
        assert body["usage"]["total_tokens"] <= 40
    finally:
        engine.max_model_len = saved
    sample = {"model": "two", "max_tokens": 10, "temperature": 1.0, "top_k": 0}
    first = openai.chat(engine, chat(**sample, seed=5))["choices"][0]["message"]["content"]
    assert openai.chat(engine, chat(**sample, seed=5))["choices"][0]["message"]["content"] == first
    others = {openai.chat(engine, chat(**sample, seed=s))["choices"][0]["message"]["content"] for s in range(6, 10)}
    assert others - {first}  # the seed matters


def test_completion_of_a_raw_prompt(engine):
    body = openai.complete(engine, CompletionRequest.from_dict(
        {"model": "one", "prompt": ["Once upon", "a time"], "max_tokens": 4, "n": 2, "echo": True}))
    assert body["object"] == "text_completion" and len(body["choices"]) == 4
    assert body["choices"][0]["text"].startswith("Once upon") and body["choices"][2]["text"].startswith("a time")
    assert body["choices"][0]["text"] == body["choices"][1]["text"]  # greedy: both choices agree
    assert body["usage"]["prompt_tokens"] == len(engine.text_ids("Once upon")) + len(engine.text_ids("a time"))
