"""Prompts with images at the engine's codec: where a message's images come from, and the refusals of engines and
models that take text only (the encoding of images itself is tested with tiny vision-language models)."""

from __future__ import annotations

import pytest
from hosts import templates
from tiny import make_tokenizer

from swiftkit.inference.base import PromptCodec, attach_images, message_images
from swiftkit.inference.protocol import ChatRequest
from swiftkit.templates import get_template


def test_a_rows_images_go_to_the_messages_whose_tags_they_fill():
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "<image> and <image>: which is larger?"},
                {"role": "assistant", "content": "The first."},
                {"role": "user", "content": "And this one? <image>"}]
    attached = attach_images(messages, ["a.png", "b.png", "c.png"])
    assert [m.get("images") for m in attached] == [None, ["a.png", "b.png"], None, ["c.png"]]
    plain, images = message_images(attached)
    assert images == ["a.png", "b.png", "c.png"] and plain == messages
    assert attach_images(messages, None) is messages


def test_openai_image_parts_become_tags_in_user_messages():
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare "}, {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
        {"type": "text", "text": " with "}, {"type": "image_url", "image_url": "data:image/png;base64,AAAA"}]}]}
    messages = ChatRequest.from_dict(body).messages
    assert messages == [{"role": "user", "content": "Compare <image> with <image>",
                         "images": ["https://x/a.png", "data:image/png;base64,AAAA"]}]


def codec(**kw) -> PromptCodec:
    return PromptCodec(get_template(make_tokenizer("chatml"), registry=templates()), **kw)


def test_a_text_model_and_a_text_only_engine_refuse_images_with_one_line():
    prompt = [{"role": "user", "content": "<image>What is it?", "images": ["a.png"]}]
    with pytest.raises(ValueError, match=r"1 image\(s\), but this model takes text only"):
        codec().prompt_ids(prompt)
    with pytest.raises(ValueError, match="--infer_backend vllm takes text prompts only"):
        codec(images=False).prompt_ids(prompt)
    assert codec().prompt_ids([{"role": "user", "content": "What is it?"}])  # text prompts are unchanged
