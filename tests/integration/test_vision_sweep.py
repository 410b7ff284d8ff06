"""Every vision-language architecture in the model registry trains one LoRA step on a row with an image and
generates from a prompt with an image, on a tiny random model.

One case per distinct (config.json ``model_type``, architecture) of the registry's ``vision`` types, named like
``llava-LlavaForConditionalGeneration``. A case builds the family's tiny model and processor
(``tests/tiny_vlm.py``) and runs swiftkit's path on it: resolve (``--model_type`` of a registered type of that
architecture) -> tokenizer + template -> the processor and the encoder of rows with images
(``steps.vision_encoder``) -> load with the image-text-to-text class -> the ``lora`` tuner (vision tower and
aligner frozen: no adapter there) -> encode two rows with generated images and collate -> one AdamW step -> one
``generate`` through the inference engine with an image in the prompt.

A case is skipped, with the reason in ``pytest -rs``, where the installed transformers lacks the architecture or
``tests/tiny_vlm.py`` cannot build the family here (the reason is in its ``SKIPPED_FAMILIES``). Text architectures are swept by
``test_architecture_sweep.py``.
"""

from __future__ import annotations

import math

import pytest
from hosts import HOST, registries
from tiny_vlm import SKIPPED_FAMILIES, VLM_FAMILIES, save_tiny_vlm, square_image

from swiftkit.models.registry import model_types

DEFAULT_SUBSET = {"llava", "idefics3", "gemma3", "mllama", "paligemma"}


def collect_cases() -> list[tuple[str, str, list]]:
    cases: dict[tuple[str, str], list] = {}
    for entry in model_types(registries().models).values():
        if "vision" not in entry.tags:
            continue
        for arch in entry.architectures:
            cases.setdefault((entry.model_type, arch), []).append(entry)
    return [(mt, arch, types) for (mt, arch), types in sorted(cases.items())]


def _param(case):
    model_type, arch, _ = case
    marks = [] if model_type in DEFAULT_SUBSET else [pytest.mark.slow]
    return pytest.param(case, id=f"{model_type}-{arch}", marks=marks)


CASES = collect_cases()


def test_the_registry_has_thirty_vision_types_and_the_sweep_builds_most_families():
    vision = [e for e in model_types(registries().models).values() if "vision" in e.tags]
    assert len(vision) >= 30
    families = {mt for mt, _, _ in CASES}
    built = families & set(VLM_FAMILIES)
    assert len(built) >= 10, sorted(built)


def rows_with_images(folder):
    paths = []
    for k, colour in enumerate(((220, 30, 30), (30, 30, 220))):
        path = folder / f"square{k}.png"
        square_image(colour).save(path)
        paths.append(str(path))
    return [
        {"messages": [{"role": "user", "content": "<image>What colour is the square?"},
                      {"role": "assistant", "content": "It is red."}], "images": [paths[0]], "_origin": "rows:1"},
        {"messages": [{"role": "user", "content": "Look: <image> Which colour?"},
                      {"role": "assistant", "content": "Blue."}], "images": [paths[1]], "_origin": "rows:2"},
    ]


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_lora_step_and_generate_with_an_image(case, tmp_path):
    import torch
    import transformers

    from swiftkit.config import SftConfig
    from swiftkit.core.choices import choose
    from swiftkit.data.datasets import LazyEncodedDataset
    from swiftkit.inference import TransformersEngine
    from swiftkit.models import load_model, set_num_threads
    from swiftkit.recipes import steps
    from swiftkit.templates.selection import load_tokenizer_and_template
    from swiftkit.train.collate import make_collator
    from swiftkit.train.tuner_params import multimodal_part

    model_type, arch, types = case
    if not hasattr(transformers, arch):
        pytest.skip(f"transformers {transformers.__version__} has no {arch}")
    if model_type not in VLM_FAMILIES:
        pytest.skip(f"{model_type}: {SKIPPED_FAMILIES.get(model_type, 'tests/tiny_vlm.py builds no tiny model of it')}")
    entry = types[0]
    model_dir = save_tiny_vlm(tmp_path / "model", model_type)
    cfg = SftConfig.from_flat({"model": str(model_dir), "model_type": entry.type, "dataset": ["unused.jsonl"],
                               "lora_rank": 4, "max_length": 4096})
    set_num_threads(cfg.model.num_threads)
    resolved, tok, template = load_tokenizer_and_template(cfg.model, cfg.template, registries())
    rows = rows_with_images(tmp_path)
    encoder = steps.vision_encoder(resolved, cfg, template, (rows,))
    assert encoder is not None
    model = load_model(resolved, torch_dtype="float32", vision=True)
    assert type(model).__name__ == arch
    model = choose(HOST, "tuner", "lora", model=model, config=cfg)
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    assert lora, f"{case}: LoRA adapted no module"
    # the vision tower and the aligner are frozen by default: every adapter sits in the language model
    assert {multimodal_part(n.replace("base_model.model.", "")) for n in lora} == {"llm"}, sorted(n for n in lora if multimodal_part(n.replace("base_model.model.", "")) != "llm")

    data = LazyEncodedDataset(rows, encoder)
    encoded = [data[0], data[1]]
    for enc, row in zip(encoded, rows):
        trained = tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100])
        assert row["messages"][1]["content"] in trained  # the labels still mark the reply after the images' tokens
        assert len(enc["input_ids"]) > len(template.encode({**row, "images": None, "messages": [
            {**m, "content": m["content"].replace("<image>", "")} for m in row["messages"]]})["input_ids"])
    batch = make_collator(tok, padding_free=False, vision=True)(encoded)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(**batch).loss
    assert math.isfinite(loss.item()), f"{case}: loss {loss.item()}"
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(lora[n], p) for n, p in model.named_parameters() if n in lora), "no LoRA weight changed"

    model.eval()
    engine = TransformersEngine(model, encoder)
    prompt = [{"role": "user", "content": "<image>What colour is the square?", "images": [rows[0]["images"][0]]}]
    ids = engine.prompt_ids(prompt)
    assert getattr(ids, "features", None), "the prompt carries no image features"
    replies = engine.generate([prompt], max_new_tokens=3)
    assert len(replies) == 1 and isinstance(replies[0], str)
