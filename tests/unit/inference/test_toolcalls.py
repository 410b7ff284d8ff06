"""Tool calls parsed out of replies, and the chat responses and stream chunks built from them."""

from __future__ import annotations

import json
import re

import pytest

from swiftkit.inference.base import Generated
from swiftkit.inference.openai import chat_body, chat_chunks
from swiftkit.inference.protocol import ChatRequest
from swiftkit.inference.toolcalls import parse_tool_calls

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}},
]
HI = [{"role": "user", "content": "Weather in Paris?"}]


def functions(calls):
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


def test_hermes_block_becomes_an_openai_call():
    content, calls = parse_tool_calls(
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', TOOLS)
    assert content is None
    assert len(calls) == 1 and calls[0]["type"] == "function"
    assert re.fullmatch(r"call_[0-9a-f]{24}", calls[0]["id"])
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_several_hermes_calls_with_text_around_them_keep_the_text_as_content():
    text = ('Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
            '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}</tool_call>\nOne moment.')
    content, calls = parse_tool_calls(text, TOOLS)
    assert functions(calls) == [("get_weather", {"city": "Paris"}), ("add", {"a": 1, "b": 2})]
    assert content == "Let me check.\n\n\nOne moment."
    assert len({c["id"] for c in calls}) == 2


def test_an_unclosed_last_hermes_block_still_counts():
    content, calls = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1}}', TOOLS)
    assert content is None and functions(calls) == [("add", {"a": 1})]


def test_llama_bare_json_with_parameters_or_arguments():
    for key in ("parameters", "arguments"):
        content, calls = parse_tool_calls(f' {{"name": "add", "{key}": {{"a": 1, "b": 2}}}}\n', TOOLS)
        assert content is None and functions(calls) == [("add", {"a": 1, "b": 2})]
    content, calls = parse_tool_calls('<|python_tag|>{"name": "get_weather", "parameters": {}}', TOOLS)
    assert content is None and functions(calls) == [("get_weather", {})]


def test_json_that_is_not_the_whole_reply_is_content():
    text = 'Here is JSON: {"name": "add", "parameters": {"a": 1}}'
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_mistral_tool_calls_list():
    text = 'Sure. [TOOL_CALLS] [{"name": "add", "arguments": {"a": 1}}, {"name": "get_weather", "arguments": {}}]'
    content, calls = parse_tool_calls(text, TOOLS)
    assert content == "Sure."
    assert functions(calls) == [("add", {"a": 1}), ("get_weather", {})]


@pytest.mark.parametrize("text", [
    '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>',
    '{"name": "delete_all", "parameters": {}}',
    '[TOOL_CALLS] [{"name": "delete_all", "arguments": {}}]',
    '[TOOL_CALLS] [{"name": "add", "arguments": {}}, {"name": "delete_all", "arguments": {}}]',
])
def test_unknown_function_names_stay_content(text):
    assert parse_tool_calls(text, TOOLS) == (text, [])


@pytest.mark.parametrize("text", [
    '<tool_call>{"name": "add", "arguments": {"a": 1</tool_call>',
    '<tool_call>{"name": "add", "arguments": "{not json"}</tool_call>',
    '<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>',
    '[TOOL_CALLS] [{"name": "add", "arguments": {"a":',
    '{"name": "add", "parameters": {"a": 1}',
    '<tool_call></tool_call>',
])
def test_malformed_calls_stay_content(text):
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_a_malformed_block_stays_while_a_good_one_is_taken():
    bad = '<tool_call>{"name": "add", </tool_call>'
    content, calls = parse_tool_calls(bad + '<tool_call>{"name": "add", "arguments": {"a": 3}}</tool_call>', TOOLS)
    assert content == bad and functions(calls) == [("add", {"a": 3})]


def test_without_tools_nothing_is_parsed():
    text = '<tool_call>{"name": "add", "arguments": {}}</tool_call>'
    assert parse_tool_calls(text, None) == (text, [])
    assert parse_tool_calls(text, []) == (text, [])
    assert parse_tool_calls("", TOOLS) == ("", [])


# -- responses built from generated replies -------------------------------------------------------

CALL_TEXT = 'Checking.<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'


def request(**extra):
    return ChatRequest.from_dict({"model": "m", "messages": HI, **extra})


def test_chat_body_carries_tool_calls_and_finish_reason():
    body = chat_body(request(tools=TOOLS), 10, [Generated(CALL_TEXT, 30, "stop"), Generated("Plain.", 3, "length")])
    first, second = body["choices"]
    assert first["finish_reason"] == "tool_calls" and first["message"]["content"] == "Checking."
    assert functions(first["message"]["tool_calls"]) == [("get_weather", {"city": "Paris"})]
    assert second["message"] == {"role": "assistant", "content": "Plain."} and second["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 33


def test_tool_choice_none_or_no_tools_leaves_the_text_alone():
    for req in (request(tools=TOOLS, tool_choice="none"), request()):
        choice = chat_body(req, 10, [Generated(CALL_TEXT, 30, "stop")])["choices"][0]
        assert choice["message"] == {"role": "assistant", "content": CALL_TEXT} and choice["finish_reason"] == "stop"


def test_stream_with_tools_sends_the_calls_as_one_delta_at_the_end():
    reply = Generated(CALL_TEXT, 30, "stop")
    events = ["Checking.", "<tool_call>", CALL_TEXT[len("Checking.<tool_call>"):], reply]
    chunks = list(chat_chunks(request(tools=TOOLS, stream=True, stream_options={"include_usage": True}), 10, events))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"content": "Checking."}
    calls = deltas[2]["tool_calls"]
    assert [c["index"] for c in calls] == [0] and calls[0]["id"].startswith("call_")
    assert functions(calls) == [("get_weather", {"city": "Paris"})]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 30


def test_stream_with_tools_but_no_call_sends_the_whole_text():
    events = ["Hel", "lo", Generated("Hello", 2, "stop")]
    chunks = list(chat_chunks(request(tools=TOOLS, stream=True), 10, events))
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""}, {"content": "Hello"}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
