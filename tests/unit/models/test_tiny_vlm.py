"""The tiny vision-language models of tests/tiny_vlm.py load, render, expand images, train and generate."""

from __future__ import annotations

import math
import os

import pytest
from tiny import make_tokenizer
from tiny_vlm import SKIPPED_FAMILIES, VLM_FAMILIES, save_tiny_vlm, square_image, tiny_image

from swiftkit.core._compat import mend_llama4_outputs

FAMILIES = sorted(VLM_FAMILIES)
CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is this?"}]},
]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test of this file runs on one torch thread."""


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    """Factory: vlm_dir(family) -> the saved directory, built once per family (per worker)."""
    cache: dict = {}

    def make(family: str):
        if family not in cache:
            cache[family] = save_tiny_vlm(tmp_path_factory.mktemp(f"vlm-{family}"), family)
        return cache[family]

    return make


def _load(path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path)
    mend_llama4_outputs(model)  # transformers 5.24's Llama 4 forward fails without it (swiftkit's loader applies it)
    return model, AutoProcessor.from_pretrained(path)


def _inputs(processor, family: str, text: str):
    image = tiny_image((0, 128, 255))
    images = [[image]] if VLM_FAMILIES[family].nested_images else [image]
    inputs = processor(text=[text], images=images, return_tensors="pt")
    inputs.pop("labels", None)  # PaliGemma's processor adds (all-masked) labels of its own
    return inputs


def test_families_cover_the_common_ones():
    # (the torchvision-only run of make test builds those families alone: 17 of them)
    assert len(VLM_FAMILIES) >= (10 if os.environ.get("SWIFTKIT_TEST_TORCHVISION_FAMILIES_ONLY") == "1" else 15)
    assert not set(VLM_FAMILIES) & set(SKIPPED_FAMILIES)
    for name, family in VLM_FAMILIES.items():
        assert family.model_type == name


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_family_loads_renders_and_expands_images(vlm_dir, family):
    from transformers import AutoTokenizer

    spec = VLM_FAMILIES[family]
    path = vlm_dir(family)
    files = [f for f in path.iterdir() if f.is_file()]
    assert (path / "model.safetensors").is_file()
    # (Gemma 3n is the largest, 5.4 MB: its vision tower's multi-scale fusion stays 2048 features wide)
    assert all(f.stat().st_size < 6_000_000 for f in files), {f.name: f.stat().st_size for f in files}

    model, processor = _load(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == family
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters())
    assert tokenizer.chat_template and processor.chat_template == tokenizer.chat_template

    image_token_id = tokenizer.convert_tokens_to_ids(spec.image_token)
    assert image_token_id != tokenizer.unk_token_id and image_token_id < model.get_input_embeddings().num_embeddings
    assert getattr(model.config, "image_token_id", image_token_id) == image_token_id

    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert processor.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True) == text
    assert spec.placeholder in text and "What color is this?" in text and "Answer briefly." in text
    without_prompt = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert text.startswith(without_prompt) and len(text) > len(without_prompt)
    # A string content goes through verbatim, a placeholder written in it included.
    verbatim = tokenizer.apply_chat_template(
        [{"role": "user", "content": spec.placeholder + "Describe."}], tokenize=False
    )
    assert spec.placeholder + "Describe." in verbatim

    placeholders = tokenizer(text, add_special_tokens=False)["input_ids"].count(image_token_id)
    inputs = _inputs(processor, family, text)
    expanded = inputs["input_ids"][0].tolist().count(image_token_id)
    assert expanded >= 1
    if spec.expands:
        assert expanded > placeholders
    else:
        assert expanded == placeholders
    pixels = [key for key in inputs if key.startswith("pixel_values")]
    assert pixels and all(inputs[key].numel() > 0 for key in pixels)


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_family_trains_and_generates(vlm_dir, family):
    model, processor = _load(vlm_dir(family))
    text = processor.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    inputs = _inputs(processor, family, text)

    model.train()
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    assert math.isfinite(loss.item())
    loss.backward()
    lm_head = model.get_output_embeddings().weight
    assert lm_head.grad is not None and lm_head.grad.abs().sum() > 0

    model.eval()
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    prompt_length = 1 if model.config.is_encoder_decoder else inputs["input_ids"].shape[1]
    assert out.shape == (1, prompt_length + 2)


def test_make_tokenizer_extra_special_tokens_keep_the_trained_ids():
    plain = make_tokenizer("chatml")
    extended = make_tokenizer(
        "chatml", extra_special_tokens=["<image>"], named_special_tokens={"boi_token": "<start_of_image>"}
    )
    assert {k: v for k, v in extended.get_vocab().items() if k in plain.get_vocab()} == plain.get_vocab()
    added = extended.convert_tokens_to_ids(["<image>", "<start_of_image>"])
    assert sorted(added) == [len(plain), len(plain) + 1]
    assert extended.boi_token == "<start_of_image>" and extended.boi_token_id == added[1]
    assert extended("a<image>b")["input_ids"].count(added[0]) == 1


def test_images():
    image = tiny_image((0, 255, 0), size=28)
    assert image.mode == "RGB" and image.size == (28, 28) and image.getpixel((3, 20)) == (0, 255, 0)
    square = square_image((255, 0, 0), size=32, bg=(255, 255, 255))
    assert square.size == (32, 32)
    assert square.getpixel((16, 16)) == (255, 0, 0) and square.getpixel((1, 1)) == (255, 255, 255)
