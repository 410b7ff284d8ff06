"""Token log-probabilities of chat replies: checked against a separate forward pass of the model."""

from __future__ import annotations

import pytest
from hosts import templates

from swiftkit.inference import openai
from swiftkit.inference.protocol import ChatRequest, ProtocolError, SamplingParams
from swiftkit.inference.scheduler import group_key

HI = [{"role": "user", "content": "Hello!"}]


def chat(**body):
    return ChatRequest.from_dict({"model": "m", "messages": HI, **body})


@pytest.fixture(scope="module")
def engine(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.inference import TransformersEngine
    from swiftkit.templates import get_template

    return TransformersEngine(AutoModelForCausalLM.from_pretrained(tiny).eval(),
                              get_template(AutoTokenizer.from_pretrained(tiny), registry=templates()))


def reference(engine, prompt: list[int], steps: int):
    """Greedy ids (up to the stop token) and log_softmax rows of one unpadded forward pass over them."""
    import torch

    ids = list(prompt)
    with torch.inference_mode():
        for _ in range(steps):
            nxt = int(engine.model(torch.tensor([ids])).logits[0, -1].argmax())
            if nxt in engine.stop_token_ids:
                break
            ids.append(nxt)
        logprobs = torch.log_softmax(engine.model(torch.tensor([ids])).logits[0].float(), dim=-1)
    new = ids[len(prompt):]
    return new, [logprobs[len(prompt) - 1 + k] for k in range(len(new))]


def joined(entries) -> str:
    """The text that token entries spell, from their bytes."""
    return b"".join(bytes(e["bytes"]) for e in entries).decode("utf-8", errors="replace")


def test_chat_logprobs_equal_a_separate_forward_pass(engine):
    body = openai.chat(engine, chat(max_tokens=10, logprobs=True, top_logprobs=3))
    choice = body["choices"][0]
    content = choice["logprobs"]["content"]
    new, rows = reference(engine, engine.prompt_ids(HI), 10)
    assert len(content) == len(new) > 0
    tok = engine.template.tokenizer
    for entry, token_id, row in zip(content, new, rows):
        text = tok.decode([token_id], skip_special_tokens=False)
        assert entry["token"] == text or "\ufffd" in text and entry["token"].startswith("bytes:\\x")
        assert entry["logprob"] == pytest.approx(row[token_id].item(), abs=1e-4)
        tops = entry["top_logprobs"]
        assert len(tops) == 3
        assert [t["logprob"] for t in tops] == pytest.approx(row.topk(3).values.tolist(), abs=1e-4)
        # greedy: the chosen token is the likeliest one
        assert tops[0]["token"] == entry["token"] and tops[0]["logprob"] == pytest.approx(entry["logprob"])
        assert set(tops[0]) == {"token", "logprob", "bytes"}
    assert joined(content) == choice["message"]["content"]


def test_batched_rows_with_left_padding_get_their_own_logprobs(engine):
    prompts = [engine.prompt_ids(HI), engine.prompt_ids([{"role": "user", "content": "A much longer question, ok?"}])]
    assert len(prompts[0]) != len(prompts[1])
    replies = engine.generate_ids(prompts, SamplingParams(max_tokens=6, logprobs=True, top_logprobs=2))
    for prompt, reply in zip(prompts, replies):
        new, rows = reference(engine, prompt, 6)
        assert [e["logprob"] for e in reply.logprobs] == pytest.approx(
            [row[t].item() for t, row in zip(new, rows)], abs=1e-4)
        assert all(len(e["top_logprobs"]) == 2 for e in reply.logprobs)


def test_top_logprobs_count_and_absent_logprobs(engine):
    plain = openai.chat(engine, chat(max_tokens=4))
    assert plain["choices"][0]["logprobs"] is None
    only = openai.chat(engine, chat(max_tokens=4, logprobs=True, n=2))
    for choice in only["choices"]:
        assert choice["logprobs"]["content"] and all(e["top_logprobs"] == [] for e in choice["logprobs"]["content"])
    many = openai.chat(engine, chat(max_tokens=2, logprobs=True, top_logprobs=20))
    assert all(len(e["top_logprobs"]) == 20 for e in many["choices"][0]["logprobs"]["content"])


def test_stop_string_keeps_the_logprobs_of_the_returned_text(engine):
    text = openai.chat(engine, chat(max_tokens=12))["choices"][0]["message"]["content"]
    assert len(text) > 4, text
    cut = openai.chat(engine, chat(max_tokens=12, stop=text[3:5], logprobs=True))["choices"][0]
    content = cut["logprobs"]["content"]
    assert joined(content).startswith(cut["message"]["content"])
    assert not joined(content[:-1]).startswith(cut["message"]["content"]) or not cut["message"]["content"]


@pytest.mark.parametrize(("body", "param", "text"), [
    ({"top_logprobs": 2}, "top_logprobs", "needs 'logprobs': true"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "<= 20"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs", ">= 0"),
    ({"logprobs": True, "top_logprobs": 1.5}, "top_logprobs", "integer"),
    ({"logprobs": "yes"}, "logprobs", "true or false"),
    ({"logprobs": True, "stream": True}, "logprobs", "'stream'"),
])
def test_logprobs_request_errors_name_the_field(body, param, text):
    with pytest.raises(ProtocolError, match=text) as err:
        chat(**body)
    assert err.value.param == param and err.value.status == 400


def test_logprobs_settings_are_part_of_the_batching_key():
    plain, asked, top = (chat().params, chat(logprobs=True).params, chat(logprobs=True, top_logprobs=4).params)
    assert (asked.logprobs, asked.top_logprobs, top.top_logprobs, plain.logprobs) == (True, 0, 4, False)
    assert len({group_key("m", p) for p in (plain, asked, top)}) == 3


def test_completion_logprobs_in_the_legacy_shape(engine):
    from swiftkit.inference.protocol import CompletionRequest

    body = openai.complete(engine, CompletionRequest.from_dict({"model": "m", "prompt": "Once upon", "max_tokens": 5,
                                                        "logprobs": 2}))
    choice = body["choices"][0]
    lp = choice["logprobs"]
    new, rows = reference(engine, engine.text_ids("Once upon"), 5)
    assert lp["token_logprobs"] == pytest.approx([row[t].item() for t, row in zip(new, rows)], abs=1e-4)
    tok = engine.template.tokenizer
    assert tok.decode(new) == choice["text"]
    assert lp["text_offset"] == [len(tok.decode(new[:k])) for k in range(len(new))]
    assert all(len(top) <= 2 and max(top.values()) == pytest.approx(v)
               for top, v in zip(lp["top_logprobs"], lp["token_logprobs"]))


@pytest.mark.parametrize(("body", "text"), [
    ({"logprobs": 6}, "<= 5"),
    ({"logprobs": True}, "integer"),
    ({"logprobs": 1, "stream": True}, "'stream'"),
])
def test_completion_logprobs_errors(body, text):
    from swiftkit.inference.protocol import CompletionRequest

    with pytest.raises(ProtocolError, match=text) as err:
        CompletionRequest.from_dict({"model": "m", "prompt": "x", **body})
    assert err.value.param == "logprobs"


def test_echo_with_logprobs_scores_the_prompt_tokens(engine):
    import torch

    from swiftkit.inference.protocol import CompletionRequest, completion_logprobs, echoed_logprobs

    prompt = "Once upon a time"
    req = CompletionRequest.from_dict({"model": "m", "prompt": prompt, "echo": True, "logprobs": 2, "max_tokens": 0})
    assert req.params.max_tokens == 0 and req.echo and req.params.top_logprobs == 2
    ids = engine.text_ids(prompt)
    [entries] = engine.prompt_logprobs([ids], 2)
    with torch.inference_mode():
        rows = torch.log_softmax(engine.model(torch.tensor([ids])).logits[0].float(), dim=-1)
    lp = completion_logprobs(echoed_logprobs(prompt, engine.text_offsets(prompt, ids), entries))
    tok = engine.template.tokenizer
    assert lp["tokens"] == [tok.decode([i]) for i in ids]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["token_logprobs"][1:] == pytest.approx([rows[p, ids[p + 1]].item() for p in range(len(ids) - 1)],
                                                     abs=1e-4)
    assert [max(top.values()) for top in lp["top_logprobs"][1:]] == pytest.approx(
        rows[:-1].max(dim=-1).values.tolist(), abs=1e-4)
    assert lp["text_offset"] == [len(tok.decode(ids[:k])) for k in range(len(ids))]
    assert "".join(lp["tokens"]) == prompt


def test_echoed_offsets_continue_after_the_prompt_into_the_reply():
    from swiftkit.inference.protocol import completion_logprobs, echoed_logprobs, token_logprob

    prompt = [{**token_logprob("<s>", b"<s>", None), "top_logprobs": None}, token_logprob("Hi", b"Hi", -1.0, [])]
    reply = [token_logprob(" th", b" th", -0.5, []), token_logprob("ere", b"ere", -0.25, [])]
    lp = completion_logprobs(echoed_logprobs("Hi", [0, 0], prompt, reply))  # BOS added by the tokenizer: no text
    assert lp["text_offset"] == [0, 0, 2, 5]
    assert lp["token_logprobs"] == [None, -1.0, -0.5, -0.25] and lp["top_logprobs"] == [None, {}, {}, {}]


@pytest.mark.parametrize(("body", "param", "text"), [
    ({"max_tokens": 0}, "max_tokens", "needs 'echo': true"),
    ({"max_tokens": 0, "echo": True, "stream": True}, "max_tokens", "'stream'"),
    ({"max_tokens": -1, "echo": True}, "max_tokens", ">= 0"),
])
def test_max_tokens_zero_needs_echo(body, param, text):
    from swiftkit.inference.protocol import CompletionRequest

    with pytest.raises(ProtocolError, match=text) as err:
        CompletionRequest.from_dict({"model": "m", "prompt": "x", **body})
    assert err.value.param == param
    with pytest.raises(ProtocolError, match=">= 1"):
        chat(max_tokens=0)


def test_vllm_refuses_logprobs():
    from swiftkit.inference.protocol import CompletionRequest
    from swiftkit.inference.vllm_engine import VllmEngine

    engine = object.__new__(VllmEngine)  # refused before the engine is used: no vllm needed
    with pytest.raises(ProtocolError, match="not supported by this engine") as err:
        openai.prepare_chat(engine, chat(logprobs=True))
    assert err.value.param == "logprobs"
    with pytest.raises(ProtocolError, match="not supported by this engine"):
        openai.prepare_completion(engine, CompletionRequest.from_dict({"model": "m", "prompt": "x", "logprobs": 0}))
    assert engine.supports_prompt_logprobs is False
    with pytest.raises(ProtocolError, match="prompt logprobs .*--infer_backend vllm") as err:
        engine.prompt_logprobs([[1, 2]], 0)
    assert err.value.param == "logprobs" and err.value.status == 400


def test_offline_completion_with_echo_scores_the_prompt_as_the_server_does(engine):
    """`openai.complete` (the server's answer computed in the caller's thread) returns the prompt's
    log-probabilities for echo + logprobs with max_tokens 0, like the /v1/completions route."""
    from swiftkit.evaluate.local import LocalEvalModel
    from swiftkit.inference.protocol import CompletionRequest

    name = engine.model_names()[0] if engine.model_names() else "m"
    body = openai.complete(engine, CompletionRequest.from_dict({"model": name, "prompt": "Once upon a time",
                                                                 "max_tokens": 0, "echo": True, "logprobs": 1}))
    choice = body["choices"][0]
    assert choice["text"] == "Once upon a time" and choice["logprobs"]["token_logprobs"][0] is None
    total = sum(choice["logprobs"]["token_logprobs"][1:])
    (ll, count), = LocalEvalModel(engine.model, engine.template, name=name).rolling_loglikelihood(["Once upon a time"])
    assert total == pytest.approx(ll, abs=1e-4) and count == len(choice["logprobs"]["tokens"]) - 1
