"""Every registered template: the exact text of a 2-turn conversation with a system prompt, and
exactly which tokens get loss (each reply and its end-of-turn token, nothing else)."""

from __future__ import annotations

import pytest
from tiny import make_tokenizer

from swiftkit.templates import get_template

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]

# template -> (the rendered conversation, the trained spans in order)
EXPECTED = {
    "alpaca": (
        '<s>Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello!</s>\n\n### Instruction:\n2+2?\n\n### Response:\n4</s>\n\n',
        ['Hello!</s>', '4</s>'],
    ),
    "chatml": (
        '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n',
        ['Hello!<|im_end|>', '4<|im_end|>'],
    ),
    "default": (
        '<s>Be brief.\n\nUser: Hi\nAssistant: Hello!</s>\nUser: 2+2?\nAssistant: 4</s>\n',
        [' Hello!</s>', ' 4</s>'],
    ),
    "gemma": (
        '<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n',
        ['Hello!<end_of_turn>', '4<end_of_turn>'],
    ),
    "llama2": (
        '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST] 4 </s>',
        [' Hello! </s>', ' 4 </s>'],
    ),
    "llama3": (
        '<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>',
        ['Hello!<|eot_id|>', '4<|eot_id|>'],
    ),
    "mistral": (
        '<s>[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] 2+2? [/INST]4</s>',
        ['Hello!</s>', '4</s>'],
    ),
    "phi3": (
        '<s><|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\n2+2?<|end|>\n<|assistant|>\n4<|end|>\n',
        ['Hello!<|end|>', '4<|end|>'],
    ),
}


def trained_spans(tok, ids, labels) -> list[str]:
    spans, start = [], None
    for i, label in enumerate([*labels, -100]):
        if label != -100 and start is None:
            start = i
        elif label == -100 and start is not None:
            spans.append(tok.decode(ids[start:i]))
            start = None
    return spans


def test_every_registered_template_is_covered(template_registry):
    assert sorted(name for name, _ in template_registry.items()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_text_and_loss_mask(template_registry, name):
    tok = make_tokenizer(None)  # a base tokenizer: the registered template supplies the format
    template = get_template(tok, name, registry=template_registry)
    enc = template.encode({"messages": CONVERSATION})
    text, trained = EXPECTED[name]
    assert tok.decode(enc["input_ids"]) == text
    assert trained_spans(tok, enc["input_ids"], enc["labels"]) == trained
    # labels are the ids themselves where trained
    assert all(label in (-100, i) for i, label in zip(enc["input_ids"], enc["labels"]))
