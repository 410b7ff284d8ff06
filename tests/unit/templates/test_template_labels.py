"""Label masks: exactly the assistant replies and their end-of-turn tokens, read from the template."""

from __future__ import annotations

import pytest
from hosts import templates
from template_helpers import (
    END_OF_TURN,
    IGNORE,
    REPLIES,
    chat_ids,
    conversation,
    labelled_spans,
)

from swiftkit.templates import TemplateError, get_template

STYLES = list(END_OF_TURN)


@pytest.mark.parametrize("style", STYLES)
def test_every_reply_and_its_end_of_turn_token_is_labelled(tokenizer_factory, style):
    tok = tokenizer_factory(style)
    encoded = get_template(tok, registry=templates()).encode({"messages": conversation()})
    assert labelled_spans(tok, encoded) == [reply + END_OF_TURN[style] for reply in REPLIES]


def test_smollm2_labels_only_replies(smollm2_tokenizer):
    encoded = get_template(smollm2_tokenizer, registry=templates()).encode({"messages": conversation()})
    assert labelled_spans(smollm2_tokenizer, encoded) == [reply + "<|im_end|>" for reply in REPLIES]
    # The separator after <|im_end|> is a newline token with no loss.
    newline = smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    ends = [i for i, t in enumerate(encoded["input_ids"]) if t == newline and encoded["labels"][i] != IGNORE]
    assert len(ends) == 3 and all(encoded["labels"][i + 1] == IGNORE for i in ends)


@pytest.mark.parametrize("style", STYLES)
def test_last_round_labels_only_the_final_reply(tokenizer_factory, style):
    tok = tokenizer_factory(style)
    encoded = get_template(tok, loss_scale="last_round", registry=templates()).encode({"messages": conversation()})
    assert labelled_spans(tok, encoded) == [REPLIES[-1] + END_OF_TURN[style]]


@pytest.mark.parametrize("style", STYLES)
def test_all_labels_every_token(tokenizer_factory, style):
    tok = tokenizer_factory(style)
    encoded = get_template(tok, loss_scale="all", registry=templates()).encode({"messages": conversation()})
    assert encoded["labels"] == encoded["input_ids"]


def test_loss_false_excludes_a_reply(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    messages = conversation()
    messages[3]["loss"] = False
    encoded = get_template(tok, registry=templates()).encode({"messages": messages})
    assert labelled_spans(tok, encoded) == [REPLIES[0] + "<|im_end|>", REPLIES[2] + "<|im_end|>"]
    # The "loss" key never reaches the template: ids are those of the plain conversation.
    assert encoded["input_ids"] == chat_ids(tok, conversation())


def test_loss_true_forces_a_reply_in_under_last_round(tokenizer_factory):
    tok = tokenizer_factory("llama3")
    messages = conversation()
    messages[1]["loss"] = True
    encoded = get_template(tok, loss_scale="last_round", registry=templates()).encode({"messages": messages})
    assert labelled_spans(tok, encoded) == [REPLIES[0] + "<|eot_id|>", REPLIES[2] + "<|eot_id|>"]


def test_loss_false_on_the_final_reply_under_last_round_leaves_nothing(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    messages = conversation()
    messages[5]["loss"] = False
    with pytest.raises(TemplateError, match="nothing to train on"):
        get_template(tok, loss_scale="last_round", registry=templates()).encode({"messages": messages})


def test_loss_false_under_all_masks_only_that_reply(tokenizer_factory):
    tok = tokenizer_factory("gemma")
    messages = conversation()
    messages[1]["loss"] = False
    encoded = get_template(tok, loss_scale="all", registry=templates()).encode({"messages": messages})
    masked = [t for t, label in zip(encoded["input_ids"], encoded["labels"]) if label == IGNORE]
    assert tok.decode(masked) == REPLIES[0] + "<end_of_turn>"


def test_trimmed_content_is_labelled_as_rendered(tokenizer_factory):
    tok = tokenizer_factory("llama3")  # its template trims every message
    messages = [{"role": "user", "content": "  hi  "}, {"role": "assistant", "content": "  padded reply \n"}]
    encoded = get_template(tok, registry=templates()).encode({"messages": messages})
    assert encoded["input_ids"] == chat_ids(tok, messages)
    assert labelled_spans(tok, encoded) == ["padded reply<|eot_id|>"]


def test_system_prompt_folded_into_user_turn_gets_no_loss(tokenizer_factory):
    tok = tokenizer_factory("gemma")
    encoded = get_template(tok, system="Be brief.", registry=templates()).encode({"messages": conversation()})
    spans = labelled_spans(tok, encoded)
    assert spans == [reply + "<end_of_turn>" for reply in REPLIES]
    assert "Be brief." in tok.decode(encoded["input_ids"])


# A template that drops old reasoning from history (as reasoning models' templates do).
REASONING_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- set content = message['content'] %}"
    "{%- if message['role'] == 'assistant' and not loop.last and '</think>' in content %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\n') %}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

# A template that closes a finished conversation with EOS (as Phi-3's does).
CLOSING_EOS_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\n' }}{%- else %}{{- eos_token }}{%- endif %}"
)

# A generation prompt that opens an empty reasoning block the rendered replies do not have.
EMPTY_THINKING_PROMPT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
)


def test_history_rendered_differently_falls_back_to_the_end_of_turn(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    tok.chat_template = REASONING_TEMPLATE
    messages = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nadd them\n</think>\n\nIt is 4."},
        {"role": "user", "content": "3+3?"},
        {"role": "assistant", "content": "<think>\nadd again\n</think>\n\nIt is 6."},
    ]
    encoded = get_template(tok, registry=templates()).encode({"messages": messages})
    assert encoded["input_ids"] == chat_ids(tok, messages)
    assert labelled_spans(tok, encoded) == [
        "It is 4.<|im_end|>",  # history: the template dropped the reasoning
        "<think>\nadd again\n</think>\n\nIt is 6.<|im_end|>",
    ]


def test_template_closing_the_conversation_with_eos(tokenizer_factory):
    tok = tokenizer_factory(None)  # eos </s>
    tok.chat_template = CLOSING_EOS_TEMPLATE
    encoded = get_template(tok, registry=templates()).encode({"messages": conversation()})
    assert encoded["input_ids"] == chat_ids(tok, conversation())
    spans = labelled_spans(tok, encoded)
    assert spans[:2] == [reply + "<|end|>" for reply in REPLIES[:2]]
    assert spans[2] == REPLIES[2] + "<|end|>\n</s>"


# A template that attaches the system prompt to the last user message (as Mistral v0.3's does), so
# the rendering of the history changes as the conversation grows.
SYSTEM_ON_LAST_USER_TEMPLATE = (
    "{%- set system = messages[0]['content'] if messages[0]['role'] == 'system' else '' %}"
    "{%- set turns = messages[1:] if system else messages %}"
    "{%- set last_user = turns | selectattr('role', 'equalto', 'user') | list | last %}"
    "{{- bos_token }}"
    "{%- for message in turns %}"
    "{%- if message['role'] == 'user' %}"
    "{{- '[INST] ' + (system + '\\n\\n' if system and message is sameas last_user else '') "
    "+ message['content'] + ' [/INST]' }}"
    "{%- else %}{{- message['content'] }}{{ eos_token }}{%- endif %}"
    "{%- endfor %}"
)


def test_history_that_changes_before_the_reply_is_searched(tokenizer_factory):
    tok = tokenizer_factory(None)
    tok.chat_template = SYSTEM_ON_LAST_USER_TEMPLATE
    messages = [{"role": "system", "content": "Be brief."}] + conversation()
    full = tok.apply_chat_template(messages, tokenize=False)
    assert full.index("Be brief.") > full.index(REPLIES[1])
    encoded = get_template(tok, registry=templates()).encode({"messages": messages})
    assert encoded["input_ids"] == chat_ids(tok, messages)
    assert labelled_spans(tok, encoded) == [reply + "</s>" for reply in REPLIES]


def test_generation_prompt_that_is_not_the_reply_start_is_an_error(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    tok.chat_template = EMPTY_THINKING_PROMPT_TEMPLATE
    row = {"messages": conversation(), "_origin": "chat.jsonl:4"}
    with pytest.raises(TemplateError, match=r"chat.jsonl:4: message 1 \(assistant\): .*generation prompt"):
        get_template(tok, registry=templates()).encode(row)


def test_message_index_counts_the_row_not_the_inserted_system(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    tok.chat_template = EMPTY_THINKING_PROMPT_TEMPLATE
    with pytest.raises(TemplateError, match=r"message 1 \(assistant\)"):
        get_template(tok, system="Be brief.", registry=templates()).encode({"messages": conversation()})


def test_conversation_without_a_reply_has_nothing_to_train(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    row = {"messages": [{"role": "user", "content": "hello"}], "_origin": "data.jsonl:9"}
    with pytest.raises(TemplateError, match="data.jsonl:9: nothing to train on"):
        get_template(tok, registry=templates()).encode(row)
    # Under "all" every token trains, so the same row is fine.
    encoded = get_template(tok, loss_scale="all", registry=templates()).encode(row)
    assert encoded["labels"] == encoded["input_ids"]


def test_tokenizer_without_offsets_still_gets_exact_labels():
    # ByT5's tokenizer is pure Python: it returns no character offsets.
    from tiny import CHATML_TEMPLATE
    from transformers.models.byt5.tokenization_byt5 import ByT5Tokenizer

    tok = ByT5Tokenizer(extra_ids=0)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML_TEMPLATE
    assert "offset_mapping" not in tok("ab", return_offsets_mapping=True)
    template = get_template(tok, registry=templates())
    encoded = template.encode({"messages": conversation()})
    assert encoded["input_ids"] == chat_ids(tok, conversation())
    assert labelled_spans(tok, encoded) == [reply + "<|im_end|>" for reply in REPLIES]
    assert tok.convert_tokens_to_ids("<|im_end|>") in template.stop_token_ids
