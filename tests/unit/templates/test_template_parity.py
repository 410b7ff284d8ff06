"""Train/serve parity: encoded ids equal what ``apply_chat_template`` gives the model at inference."""

from __future__ import annotations

import pytest
from hosts import templates
from template_helpers import END_OF_TURN, IGNORE, chat_ids, conversation, labelled_spans

from swiftkit.templates import get_template

STYLES = list(END_OF_TURN)
SYSTEM = {"role": "system", "content": "You are a careful assistant."}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("with_system", [False, True])
def test_encode_equals_apply_chat_template(tokenizer_factory, style, with_system):
    tok = tokenizer_factory(style)
    messages = ([SYSTEM] if with_system else []) + conversation()
    encoded = get_template(tok, registry=templates()).encode({"messages": messages})
    assert encoded["input_ids"] == chat_ids(tok, messages)
    assert len(encoded["labels"]) == len(encoded["input_ids"])


@pytest.mark.parametrize("with_system", [False, True])
def test_smollm2_own_template_parity(smollm2_tokenizer, with_system):
    messages = ([SYSTEM] if with_system else []) + conversation()
    template = get_template(smollm2_tokenizer, registry=templates())
    encoded = template.encode({"messages": messages})
    assert encoded["input_ids"] == chat_ids(smollm2_tokenizer, messages)
    text = smollm2_tokenizer.decode(encoded["input_ids"])
    # SmolLM2's template adds its default system prompt only when the conversation has none.
    assert ("named SmolLM" in text) is (not with_system)
    assert template.name == "model"
    assert template.chat_template == smollm2_tokenizer.chat_template


@pytest.mark.parametrize("style", STYLES)
def test_system_flag_is_a_prepended_system_message(tokenizer_factory, style):
    tok = tokenizer_factory(style)
    template = get_template(tok, system="Answer briefly.", registry=templates())
    encoded = template.encode({"messages": conversation()})
    expected = [{"role": "system", "content": "Answer briefly."}] + conversation()
    assert encoded["input_ids"] == chat_ids(tok, expected)
    # A conversation that has its own system message keeps it.
    own = [SYSTEM] + conversation()
    assert template.encode({"messages": own})["input_ids"] == chat_ids(tok, own)


def test_system_flag_replaces_smollm2_default_system(smollm2_tokenizer):
    template = get_template(smollm2_tokenizer, system="You are Nova.", registry=templates())
    ids = template.encode({"messages": conversation()})["input_ids"]
    text = smollm2_tokenizer.decode(ids)
    assert "You are Nova." in text and "SmolLM" not in text
    expected = [{"role": "system", "content": "You are Nova."}] + conversation()
    assert ids == chat_ids(smollm2_tokenizer, expected)


@pytest.mark.parametrize("style", STYLES)
def test_encode_prompt_equals_generation_prompt(tokenizer_factory, style):
    tok = tokenizer_factory(style)
    template = get_template(tok, registry=templates())
    history = conversation()[:5]  # ends with the third user turn
    prompt = template.encode_prompt(history)
    assert prompt == chat_ids(tok, history, add_generation_prompt=True)
    # Inference prompt tokens are exactly the training tokens before the last reply.
    encoded = template.encode({"messages": conversation()})
    assert encoded["input_ids"][: len(prompt)] == prompt
    # ...and the loss of the last reply starts right where the prompt ends.
    assert encoded["labels"][len(prompt) - 1] == IGNORE
    assert encoded["labels"][len(prompt)] != IGNORE


def test_smollm2_encode_prompt(smollm2_tokenizer):
    template = get_template(smollm2_tokenizer, registry=templates())
    history = conversation()[:3]
    assert template.encode_prompt(history) == chat_ids(smollm2_tokenizer, history, add_generation_prompt=True)
    with_system = get_template(smollm2_tokenizer, system="You are Nova.", registry=templates()).encode_prompt(history)
    expected = [{"role": "system", "content": "You are Nova."}] + history
    assert with_system == chat_ids(smollm2_tokenizer, expected, add_generation_prompt=True)


def test_tool_messages_keep_parity_and_get_no_loss(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    messages = [
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "add(2, 3)"},
        {"role": "tool", "content": "5"},
        {"role": "assistant", "content": "It is 5."},
    ]
    encoded = get_template(tok, registry=templates()).encode({"messages": messages})
    assert encoded["input_ids"] == chat_ids(tok, messages)
    assert labelled_spans(tok, encoded) == ["add(2, 3)<|im_end|>", "It is 5.<|im_end|>"]


def test_extra_row_keys_are_ignored(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    template = get_template(tok, registry=templates())
    plain = template.encode({"messages": conversation()})
    extra = template.encode({"messages": conversation(), "_origin": "train.jsonl:3", "id": 7})
    assert plain == extra
