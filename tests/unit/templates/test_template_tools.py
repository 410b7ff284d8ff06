"""Tool calling: rows with ``tools`` and ``tool_calls`` encode with parity, train the calls, not the results."""

from __future__ import annotations

import copy
import json

import pytest
from hosts import templates
from template_helpers import chat_ids, labelled_spans

from swiftkit.templates import TemplateError, get_template

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n</tool_call>'
ANSWER = "It is 22 C and sunny in Paris."
RESULT = "22 C, sunny"


def call(name="get_weather", arguments=None):
    arguments = {"city": "Paris", "unit": "C"} if arguments is None else arguments
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def tool_conversation(arguments=None, content=""):
    """user -> assistant tool call -> tool result -> assistant answer."""
    return [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": content, "tool_calls": [call(arguments=arguments)]},
        {"role": "tool", "content": RESULT, "tool_call_id": "call_1", "name": "get_weather"},
        {"role": "assistant", "content": ANSWER},
    ]


@pytest.fixture
def qwen25(tokenizer_factory):
    return tokenizer_factory("qwen25")


def test_tool_conversation_has_parity_with_apply_chat_template(qwen25):
    messages = tool_conversation()
    encoded = get_template(qwen25, registry=templates()).encode({"messages": messages, "tools": TOOLS})
    assert encoded["input_ids"] == chat_ids(qwen25, messages, tools=TOOLS)
    text = qwen25.decode(encoded["input_ids"])
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in text
    assert f"<tool_response>\n{RESULT}\n</tool_response>" in text
    # Without the tools the system turn is gone: they really reached the template.
    assert encoded["input_ids"] != chat_ids(qwen25, messages)


def test_tool_call_and_answer_are_trained_but_not_the_tool_result(qwen25):
    encoded = get_template(qwen25, registry=templates()).encode({"messages": tool_conversation(), "tools": TOOLS})
    spans = labelled_spans(qwen25, encoded)
    assert spans == [CALL_TEXT + "<|im_end|>", ANSWER + "<|im_end|>"]
    assert not any(RESULT in span or "tool_response" in span for span in spans)


def test_last_round_trains_a_final_tool_call(qwen25):
    messages = tool_conversation()[:2]
    encoded = get_template(qwen25, loss_scale="last_round", registry=templates()).encode({"messages": messages, "tools": TOOLS})
    assert labelled_spans(qwen25, encoded) == [CALL_TEXT + "<|im_end|>"]


def test_parallel_calls_with_text_and_consecutive_results(qwen25):
    messages = [
        {"role": "system", "content": "Use tools when needed."},
        {"role": "user", "content": "Weather in Paris and in Rome?"},
        {"role": "assistant", "content": "Let me check.",
         "tool_calls": [call(arguments={"city": "Paris"}), call(arguments='{"city": "Rome"}')]},
        {"role": "tool", "content": "22 C", "tool_call_id": "a"},
        {"role": "tool", "content": "25 C", "tool_call_id": "b"},
        {"role": "assistant", "content": "Paris 22 C, Rome 25 C."},
    ]
    encoded = get_template(qwen25, registry=templates()).encode({"messages": messages, "tools": TOOLS})
    reference = copy.deepcopy(messages)
    reference[2]["tool_calls"][1]["function"]["arguments"] = {"city": "Rome"}
    assert encoded["input_ids"] == chat_ids(qwen25, reference, tools=TOOLS)
    first = (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>'
    )
    assert labelled_spans(qwen25, encoded) == [first, "Paris 22 C, Rome 25 C.<|im_end|>"]
    text = qwen25.decode(encoded["input_ids"])
    assert "Use tools when needed.\n\n# Tools" in text


def test_arguments_as_json_string_or_dict_and_null_content_give_the_same_ids(qwen25):
    template = get_template(qwen25, registry=templates())
    as_dict = template.encode({"messages": tool_conversation(), "tools": TOOLS})
    row = {"messages": tool_conversation('{"city": "Paris", "unit": "C"}', None), "tools": TOOLS}
    before = copy.deepcopy(row)
    assert template.encode(row) == as_dict
    assert row == before  # the row itself is left as it was
    # Compact or spaced JSON, same call.
    compact = template.encode({"messages": tool_conversation('{"city":"Paris","unit":"C"}'), "tools": TOOLS})
    assert compact == as_dict


# Arguments written straight into the text: this template needs them as a JSON string.
TEXT_ARGUMENTS_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{%- for c in message['tool_calls'] or [] %}"
    "{{- '<tool_call>' + c['function']['name'] + ' ' + c['function']['arguments'] + '</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


@pytest.mark.parametrize("arguments", [{"city": "Paris"}, '{"city": "Paris"}', '{"city":"Paris"}'])
def test_template_that_concatenates_arguments_gets_a_json_string(tokenizer_factory, arguments):
    tok = tokenizer_factory("chatml")
    tok.chat_template = TEXT_ARGUMENTS_TEMPLATE
    encoded = get_template(tok, registry=templates()).encode({"messages": tool_conversation(arguments)})
    assert encoded["input_ids"] == chat_ids(tok, tool_conversation('{"city": "Paris"}'))
    assert labelled_spans(tok, encoded)[0] == '<tool_call>get_weather {"city": "Paris"}</tool_call><|im_end|>'


def test_encode_prompt_with_tools_ends_in_the_generation_prompt(qwen25):
    template = get_template(qwen25, registry=templates())
    messages = tool_conversation()[:3]
    ids = template.encode_prompt(messages, tools=TOOLS)
    assert ids == chat_ids(qwen25, messages, tools=TOOLS, add_generation_prompt=True)
    text = qwen25.decode(ids)
    assert text.endswith(f"{RESULT}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")
    assert "<tools>" in text
    assert "<tools>" not in qwen25.decode(template.encode_prompt(messages[:1]))


def test_empty_tools_is_no_tools(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    encoded = get_template(tok, registry=templates()).encode({"messages": messages, "tools": []})
    assert encoded["input_ids"] == chat_ids(tok, messages)


def test_tool_rows_leave_the_fingerprint_alone(qwen25):
    template = get_template(qwen25, registry=templates())
    fingerprint = template.fingerprint
    template.encode({"messages": tool_conversation('{"city": "Paris"}'), "tools": TOOLS})
    assert template.fingerprint == fingerprint == get_template(qwen25, registry=templates()).fingerprint


def _broken(edit):
    row = {"messages": tool_conversation(), "tools": TOOLS, "_origin": "agent.jsonl:7"}
    edit(row)
    return row


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["messages"][1].update(tool_calls=call()),
         r"agent\.jsonl:7: message 1 \(assistant\): 'tool_calls' must be a list of calls, got dict"),
        (lambda r: r["messages"][1].update(tool_calls=[{"name": "get_weather", "arguments": {}}]),
         r"agent\.jsonl:7: message 1 \(assistant\): tool call 0 must look like"),
        (lambda r: r["messages"][1].update(tool_calls=[call(name="")]),
         r"agent\.jsonl:7: message 1 \(assistant\): tool call 0 has no function name"),
        (lambda r: r["messages"][1]["tool_calls"][0]["function"].pop("name"),
         r"agent\.jsonl:7: message 1 \(assistant\): tool call 0 has no function name"),
        (lambda r: r["messages"][1].update(tool_calls=[call(), call(arguments="{'city': 'Paris'}")]),
         r"agent\.jsonl:7: message 1 \(assistant\): tool call 1 \(get_weather\): 'arguments' is not valid JSON"),
        (lambda r: r["messages"][1].update(tool_calls=[call(arguments="[1, 2]")]),
         r"tool call 0 \(get_weather\): 'arguments' must be a JSON object .*got list"),
        (lambda r: r.update(tools=TOOLS[0]),
         r"agent\.jsonl:7: 'tools' must be a list of tool schemas \(objects\), got dict"),
        (lambda r: r.update(tools=[TOOLS[0], "get_weather"]),
         r"agent\.jsonl:7: 'tools' item 1 must be an object"),
        (lambda r: r["messages"][0].update(tool_calls=[call()]),
         r"agent\.jsonl:7: message 0 \(user\): 'tool_calls' belong on assistant messages"),
        (lambda r: r["messages"][3].update(content=None),
         r"agent\.jsonl:7: message 3 \(assistant\): content must be a string, got NoneType \(null only"),
        (lambda r: r["messages"][2].update(tool_call_id=5),
         r"agent\.jsonl:7: message 2 \(tool\): 'tool_call_id' must be a string, got int"),
    ],
)
def test_bad_tool_data_names_the_row_and_message(qwen25, edit, message):
    with pytest.raises(TemplateError, match=message):
        get_template(qwen25, registry=templates()).encode(_broken(edit))


def test_error_index_counts_the_row_messages_when_a_system_prompt_is_inserted(qwen25):
    row = _broken(lambda r: r["messages"][1].update(tool_calls=[call(arguments="{oops")]))
    with pytest.raises(TemplateError, match=r"message 1 \(assistant\): tool call 0"):
        get_template(qwen25, system="Be brief.", registry=templates()).encode(row)


def test_template_without_tools_refuses_a_row_with_tools(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
           "tools": TOOLS, "_origin": "agent.jsonl:3"}
    with pytest.raises(TemplateError, match=r"agent\.jsonl:3: the row has 'tools' but the chat template "
                                            r"cannot express tools.*pick a tool-capable template"):
        get_template(tok, registry=templates()).encode(row)
    with pytest.raises(TemplateError, match="cannot express tools"):
        get_template(tok, registry=templates()).encode_prompt(row["messages"][:1], tools=TOOLS)


def test_template_without_tool_calls_refuses_a_tool_call(tokenizer_factory):
    tok = tokenizer_factory("llama3")
    with pytest.raises(TemplateError, match=r"a\.jsonl:1: message 1 has 'tool_calls' but the chat "
                                            r"template cannot express tool calls"):
        get_template(tok, system="Be brief.", registry=templates()).encode({"messages": tool_conversation(), "_origin": "a.jsonl:1"})


def test_smollm2_template_cannot_express_tools(smollm2_tokenizer):
    template = get_template(smollm2_tokenizer, registry=templates())
    with pytest.raises(TemplateError, match="the row has 'tools' but the chat template cannot express tools"):
        template.encode({"messages": tool_conversation(), "tools": TOOLS})
    with pytest.raises(TemplateError, match="message 1 has 'tool_calls' but the chat template cannot"):
        template.encode({"messages": tool_conversation()})
    # Tool results alone are plain turns to it: they encode, with parity and no loss.
    messages = [tool_conversation()[0], {"role": "tool", "content": RESULT}, {"role": "assistant", "content": ANSWER}]
    encoded = template.encode({"messages": messages})
    assert encoded["input_ids"] == chat_ids(smollm2_tokenizer, messages)
    assert labelled_spans(smollm2_tokenizer, encoded) == [ANSWER + "<|im_end|>"]
