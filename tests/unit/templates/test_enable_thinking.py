"""--enable_thinking reaches every render of a chat template that reads it (training ids, labels and
generation prompts alike), and is ignored with a note by a template that does not."""

from __future__ import annotations

from template_helpers import labelled_spans
from tiny import make_tokenizer

from swiftkit.templates import get_template
from swiftkit.templates.spans import input_ids_of

# ChatML whose replies carry an empty thinking block when enable_thinking is false (as Qwen3's hybrid
# template writes it): in the generation prompt and before every assistant reply.
THINKING_TEMPLATE = (
    "{% set no_think = enable_thinking is defined and not enable_thinking %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' and no_think %}{{ '<think>\n\n</think>\n\n' }}{% endif %}"
    "{{ message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if no_think %}{{ '<think>\n\n</think>\n\n' }}{% endif %}{% endif %}"
)
CHAT = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi, how can I help?"}]


def thinking_tokenizer():
    tok = make_tokenizer("chatml")
    tok.chat_template = THINKING_TEMPLATE
    return tok


def test_enable_thinking_false_renders_the_empty_thinking_block_in_training_and_generation(template_registry):
    tok = thinking_tokenizer()
    template = get_template(tok, enable_thinking=False, registry=template_registry)
    assert template.chat_kwargs == {"enable_thinking": False}

    prompt = template.encode_prompt(CHAT[:1])
    expected = input_ids_of(tok.apply_chat_template(CHAT[:1], tokenize=True, add_generation_prompt=True,
                                                    enable_thinking=False))
    assert prompt == expected
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")

    encoded = template.encode({"messages": CHAT})
    assert encoded["input_ids"] == input_ids_of(tok.apply_chat_template(CHAT, tokenize=True, enable_thinking=False))
    assert "<think>" in tok.decode(encoded["input_ids"])
    # the empty block belongs to the prompt (serving writes it): only the reply and its end get loss
    assert labelled_spans(tok, encoded) == ["Hi, how can I help?<|im_end|>"]
    assert encoded["input_ids"][:len(prompt)] == prompt


def test_the_templates_default_when_not_given(template_registry):
    tok = thinking_tokenizer()
    default = get_template(tok, registry=template_registry)
    thinking = get_template(tok, enable_thinking=True, registry=template_registry)
    off = get_template(tok, enable_thinking=False, registry=template_registry)
    assert default.chat_kwargs == {} and "<think>" not in tok.decode(default.encode_prompt(CHAT[:1]))
    assert thinking.encode_prompt(CHAT[:1]) == default.encode_prompt(CHAT[:1])
    # the encoded-data cache is keyed by the fingerprint: a changed setting never reuses stale ids
    assert len({default.fingerprint, thinking.fingerprint, off.fingerprint}) == 3


def test_a_template_without_enable_thinking_ignores_it_with_a_note(template_registry, capsys):
    tok = make_tokenizer("chatml")
    plain = get_template(tok, registry=template_registry)
    template = get_template(tok, enable_thinking=False, registry=template_registry)
    err = capsys.readouterr().err
    assert "--enable_thinking false: the chat template of the model does not read enable_thinking; ignored" in err
    assert template.chat_kwargs == {} and template.fingerprint == plain.fingerprint
    assert template.encode({"messages": CHAT}) == plain.encode({"messages": CHAT})
