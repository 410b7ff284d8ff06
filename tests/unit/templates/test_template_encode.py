"""Rows that are text, too long or malformed; choosing a template; fingerprints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hosts import templates
from template_helpers import IGNORE, REPLIES, conversation, labelled_spans

from swiftkit.templates import SequenceTooLong, Template, TemplateError, get_template

TESTS_DIR = Path(__file__).resolve().parents[2]


# --- truncation ----------------------------------------------------------------------------------


def _full(tok):
    return get_template(tok, registry=templates()).encode({"messages": conversation()})


def test_delete_raises_sequence_too_long(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    n = len(_full(tok)["input_ids"])
    template = get_template(tok, max_length=n - 1, registry=templates())
    with pytest.raises(SequenceTooLong, match=r"data.jsonl:2: \d+ tokens is over max_length"):
        template.encode({"messages": conversation(), "_origin": "data.jsonl:2"})
    assert get_template(tok, max_length=n, registry=templates()).encode({"messages": conversation()}) == _full(tok)


def test_left_keeps_the_last_tokens(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    full = _full(tok)
    n = len(full["input_ids"])
    template = get_template(tok, max_length=n - 10, truncation_strategy="left", registry=templates())
    cut = template.encode({"messages": conversation()})
    assert cut["input_ids"] == full["input_ids"][10:]
    assert cut["labels"] == full["labels"][10:]


def test_right_keeps_the_first_tokens(tokenizer_factory):
    tok = tokenizer_factory("llama3")
    full = _full(tok)
    n = len(full["input_ids"])
    template = get_template(tok, max_length=n - 10, truncation_strategy="right", registry=templates())
    cut = template.encode({"messages": conversation()})
    assert cut["input_ids"] == full["input_ids"][: n - 10]
    assert cut["labels"] == full["labels"][: n - 10]


def test_truncation_that_leaves_no_loss_is_too_long(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    messages = [
        {"role": "user", "content": "Write a poem about the sea. " * 5},
        {"role": "assistant", "content": "No."},
    ]
    template = get_template(tok, max_length=8, truncation_strategy="right", registry=templates())
    with pytest.raises(SequenceTooLong, match="leaves no token with loss"):
        template.encode({"messages": messages})
    # Cut from the left the reply survives.
    kept = get_template(tok, max_length=8, truncation_strategy="left", registry=templates()).encode({"messages": messages})
    assert len(kept["input_ids"]) == 8 and labelled_spans(tok, kept) == ["No.<|im_end|>"]


def test_sequence_too_long_is_a_template_error():
    assert issubclass(SequenceTooLong, TemplateError) and issubclass(TemplateError, ValueError)


# --- text rows -----------------------------------------------------------------------------------


def test_text_row_gets_bos_and_eos(tokenizer_factory):
    tok = tokenizer_factory(None)  # bos <s>, eos </s>, neither added by the tokenizer itself
    encoded = get_template(tok, "default", registry=templates()).encode({"text": "The quick brown fox."})
    body = tok("The quick brown fox.", add_special_tokens=False)["input_ids"]
    assert encoded["input_ids"] == [tok.bos_token_id, *body, tok.eos_token_id]
    assert encoded["labels"] == encoded["input_ids"]


def test_text_row_without_bos(tokenizer_factory):
    tok = tokenizer_factory("chatml")  # no bos
    encoded = get_template(tok, registry=templates()).encode({"text": "Hello!"})
    assert encoded["input_ids"] == [*tok("Hello!", add_special_tokens=False)["input_ids"], tok.eos_token_id]


def test_text_row_is_truncated_like_any_row(tokenizer_factory):
    tok = tokenizer_factory(None)
    text = "The quick brown fox jumps over the lazy dog. " * 4
    with pytest.raises(SequenceTooLong):
        get_template(tok, "default", max_length=5, registry=templates()).encode({"text": text})
    left = get_template(tok, "default", max_length=5, truncation_strategy="left", registry=templates()).encode({"text": text})
    assert len(left["input_ids"]) == 5 and left["input_ids"][-1] == tok.eos_token_id


# --- malformed rows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "messages, message",
    [
        ([], "'messages' must be a non-empty list"),
        ("hello", "'messages' must be a non-empty list"),
        (["hello"], "message 0: must be a dict"),
        ([{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}],
         "message 1: role 'bot' is not one of"),
        ([{"content": "hi"}], "message 0: role None"),
        ([{"role": "user", "content": None}], r"message 0 \(user\): content must be a string"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "loss": "yes"}],
         r"message 1 \(assistant\): 'loss' must be true or false"),
        ([{"role": "user", "content": "hi", "loss": True}, {"role": "assistant", "content": "yo"}],
         "applies only to assistant messages"),
    ],
)
def test_malformed_messages_name_origin_and_index(tokenizer_factory, messages, message):
    template = get_template(tokenizer_factory("chatml"), registry=templates())
    with pytest.raises(TemplateError, match=message) as info:
        template.encode({"messages": messages, "_origin": "train.jsonl:12"})
    assert str(info.value).startswith("train.jsonl:12: ")


def test_row_without_messages_or_text(tokenizer_factory):
    template = get_template(tokenizer_factory("chatml"), registry=templates())
    with pytest.raises(TemplateError, match="train.jsonl:3: row has neither 'messages' nor 'text'.*prompt"):
        template.encode({"prompt": "hi", "_origin": "train.jsonl:3"})
    with pytest.raises(TemplateError, match="'text' must be a non-empty string"):
        template.encode({"text": "  "})


def test_template_raising_on_a_conversation_is_a_template_error(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    tok.chat_template = (
        "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('must start with user') }}{% endif %}"
        + tok.chat_template
    )
    row = {"messages": [{"role": "assistant", "content": "hi"}], "_origin": "x.jsonl:1"}
    with pytest.raises(TemplateError, match="x.jsonl:1: the chat template failed.*must start with user"):
        get_template(tok, registry=templates()).encode(row)


def test_encode_prompt_needs_a_final_user_turn(tokenizer_factory):
    template = get_template(tokenizer_factory("chatml"), registry=templates())
    with pytest.raises(TemplateError, match="message 1: a generation prompt must end with a user or tool"):
        template.encode_prompt(conversation()[:2])


# --- choosing a template -------------------------------------------------------------------------


def test_no_chat_template_and_no_name_lists_the_registered_ones(tokenizer_factory, template_registry):
    with pytest.raises(TemplateError, match="no chat template; choose one with --template NAME") as info:
        get_template(tokenizer_factory(None), registry=template_registry)
    assert "chatml" in str(info.value) and "alpaca" in str(info.value)


def test_unknown_template_name_suggests_the_closest(tokenizer_factory, template_registry):
    with pytest.raises(TemplateError, match="did you mean 'chatml'"):
        get_template(tokenizer_factory(None), "chatm", registry=template_registry)


def test_registered_name_overrides_the_model_template(tokenizer_factory, template_registry):
    tok = tokenizer_factory("chatml")
    template = get_template(tok, "llama3", registry=template_registry)
    assert template.name == "llama3"
    assert tok.chat_template == template.chat_template == template_registry.get("llama3").chat_template
    encoded = template.encode({"messages": conversation()})
    assert labelled_spans(tok, encoded) == [r + "<|eot_id|>" for r in REPLIES]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss_scale": "everything"}, "loss_scale 'everything' is not one of"),
        ({"truncation_strategy": "middle"}, "truncation_strategy 'middle' is not one of"),
        ({"max_length": 0}, "max_length must be a positive integer"),
    ],
)
def test_bad_options(tokenizer_factory, kwargs, message):
    with pytest.raises(TemplateError, match=message):
        get_template(tokenizer_factory("chatml"), **kwargs, registry=templates())


def test_decode_skips_special_tokens_and_ignored_labels(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    template = get_template(tok, registry=templates())
    encoded = template.encode({"messages": conversation()[:2]})
    assert template.decode(encoded["labels"]) == REPLIES[0]
    assert IGNORE in encoded["labels"]


# --- fingerprint ---------------------------------------------------------------------------------


def test_fingerprint_changes_with_template_and_system(tokenizer_factory, template_registry):
    tok = tokenizer_factory("chatml")
    base = get_template(tok, registry=templates()).fingerprint
    assert len(base) == 64 and int(base, 16) >= 0
    assert get_template(tok, registry=templates()).fingerprint == base
    assert get_template(tok, max_length=16, loss_scale="last_round", registry=templates()).fingerprint == base
    assert get_template(tok, system="Be brief.", registry=templates()).fingerprint != base
    other = tokenizer_factory("chatml")
    assert get_template(other, "llama3", registry=template_registry).fingerprint != base


def test_fingerprint_is_stable_across_processes(tokenizer_factory):
    here = get_template(tokenizer_factory("gemma"), system="S", registry=templates()).fingerprint
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from tiny import make_tokenizer; "
        "from swiftkit.templates import get_template; from swiftkit.core.registry import Registry; "
        "print(get_template(make_tokenizer('gemma'), system='S', registry=Registry('template')).fingerprint)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(TESTS_DIR)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == here


def test_template_class_is_usable_directly(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    template = Template(tok, "mine", tok.chat_template, loss_scale="last_round")
    assert labelled_spans(tok, template.encode({"messages": conversation()})) == [REPLIES[-1] + "<|im_end|>"]


def test_end_of_turn_token_of_the_model_template_stops_generation(tokenizer_factory):
    from tiny import CHATML_TEMPLATE

    tok = tokenizer_factory(None)  # eos </s>, but the chat template closes replies with <|im_end|>
    tok.chat_template = CHATML_TEMPLATE
    template = get_template(tok, registry=templates())
    assert template.stop_token_ids == [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]


def test_importing_templates_loads_no_heavy_library():
    code = (
        "import sys, swiftkit.templates, swiftkit.templates.plugin; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
