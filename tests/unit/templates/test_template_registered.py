"""Registered templates: every shipped YAML validates, renders and encodes a base tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hosts import builtin_host, templates
from template_helpers import REPLIES, chat_ids, conversation, labelled_spans
from tiny import TEMPLATES

from swiftkit.core.registry import Registry, RegistryError
from swiftkit.templates import TemplateEntry, TemplateError, get_template
from swiftkit.templates.plugin import REGISTERED_DIR, register_template_files
from swiftkit.templates.registry import load_template_file

REQUIRED = {"chatml", "llama3", "mistral", "gemma", "phi3", "alpaca", "default"}

# What each registered template labels for a reply ``r`` with a base tokenizer (eos ``</s>``).
LABELLED = {
    "alpaca": "{r}</s>",
    "chatml": "{r}<|im_end|>",
    "default": " {r}</s>",
    "gemma": "{r}<end_of_turn>",
    "llama2": " {r} </s>",
    "llama3": "{r}<|eot_id|>",
    "mistral": "{r}</s>",
    "phi3": "{r}<|end|>",
}
SHIPPED = sorted(p.stem for p in REGISTERED_DIR.glob("*.yaml"))
SYSTEM = {"role": "system", "content": "Be brief."}


def test_required_templates_are_shipped(template_registry):
    assert set(template_registry) >= REQUIRED
    assert set(SHIPPED) == set(template_registry) == set(LABELLED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_file_validates(name):
    entry = load_template_file(REGISTERED_DIR / f"{name}.yaml")
    assert entry.name == name
    assert entry.description and entry.stop_words
    assert "add_generation_prompt" in entry.chat_template or name in ("mistral", "llama2")


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("with_system", [False, True])
def test_registered_template_encodes_a_base_tokenizer(
    tokenizer_factory, template_registry, name, with_system
):
    tok = tokenizer_factory(None)
    assert not tok.chat_template
    template = get_template(tok, name, registry=template_registry)
    messages = ([SYSTEM] if with_system else []) + conversation()
    encoded = template.encode({"messages": messages})
    assert encoded["input_ids"] == chat_ids(tok, messages)
    assert labelled_spans(tok, encoded) == [LABELLED[name].format(r=r) for r in REPLIES]
    text = tok.decode(encoded["input_ids"])
    assert ("Be brief." in text) is with_system
    # The inference prompt is exactly the training tokens before the last reply.
    prompt = template.encode_prompt(messages[:-1])
    assert prompt == chat_ids(tok, messages[:-1], add_generation_prompt=True)
    assert encoded["input_ids"][: len(prompt)] == prompt
    assert encoded["labels"][len(prompt) - 1] == -100 and encoded["labels"][len(prompt)] != -100
    assert tok.eos_token_id in template.stop_token_ids


@pytest.mark.parametrize("name", ["chatml", "llama3", "gemma"])
def test_registered_template_renders_like_the_reference_format(tokenizer_factory, template_registry, name):
    reference = tokenizer_factory(name)
    assert reference.chat_template == TEMPLATES[name]
    tok = tokenizer_factory(name)
    get_template(tok, name, registry=template_registry)
    for messages in (conversation(), [SYSTEM] + conversation()):
        for prompt in (False, True):
            mine = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
            theirs = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
            assert mine == theirs


def test_stop_words_become_stop_token_ids(tokenizer_factory, template_registry):
    tok = tokenizer_factory(None)
    template = get_template(tok, "chatml", registry=template_registry)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert template.stop_token_ids[0] == tok.eos_token_id
    assert im_end in template.stop_token_ids
    assert len(set(template.stop_token_ids)) == len(template.stop_token_ids)


def test_saved_tokenizer_carries_the_template_used(tokenizer_factory, template_registry, tmp_path):
    from transformers import AutoTokenizer

    tok = tokenizer_factory(None)
    template = get_template(tok, "alpaca", registry=template_registry)
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.chat_template == template.chat_template
    row = {"messages": conversation()}
    assert get_template(reloaded, registry=templates()).encode(row) == template.encode(row)


def test_builtin_plugin_registers_templates_through_the_hook():
    registries = builtin_host().registries
    assert set(SHIPPED) <= set(registries.templates)
    assert registries.templates.source("chatml") == "swiftkit.templates.plugin (chatml.yaml)"


def test_duplicate_registration_needs_override():
    registry = Registry("template")
    register_template_files(registry, REGISTERED_DIR, "builtin")
    mine = TemplateEntry(name="chatml", chat_template="{{ messages[0]['content'] }}")
    with pytest.raises(RegistryError, match="registered twice"):
        registry.register("chatml", mine, source="my_plugin")
    registry.register("chatml", mine, source="my_plugin", override=True)
    assert registry.get("chatml") is mine


# --- broken files --------------------------------------------------------------------------------

GOOD = """name: mine
description: a test format
stop_words: ["</s>"]
chat_template: "{% for m in messages %}{{ m['content'] }}{% endfor %}"
"""


def _write(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_valid_file_loads(tmp_path):
    entry = load_template_file(_write(tmp_path, GOOD))
    assert entry == TemplateEntry(
        name="mine", chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}",
        stop_words=["</s>"], description="a test format",
    )


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD.replace("chat_template:", "chat_templat:"),
         r"unknown key 'chat_templat' \(did you mean 'chat_template'\?\)"),
        (GOOD.replace("name: mine\n", ""), "missing required key 'name'"),
        (GOOD.replace('stop_words: ["</s>"]', "stop_words: </s>"), "key 'stop_words' must be a list"),
        (GOOD.replace("{% endfor %}", ""), "not valid jinja"),
        (GOOD + "  broken: [\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        (GOOD.replace("name: mine", "name: My Template"), "must be lowercase"),
    ],
)
def test_broken_file_names_the_file(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(TemplateError, match=message) as info:
        load_template_file(path)
    assert str(path) in str(info.value)


def test_broken_file_in_a_plugin_folder_names_the_file(tmp_path):
    _write(tmp_path, GOOD, "a_good.yaml")
    bad = _write(tmp_path, GOOD.replace("name: mine", "name: other\nlabel: x"), "b_bad.yaml")
    with pytest.raises(TemplateError, match="unknown key 'label'") as info:
        register_template_files(Registry("template"), tmp_path, "my_plugin")
    assert str(bad) in str(info.value)
