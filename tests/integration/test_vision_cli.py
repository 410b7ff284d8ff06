"""Vision-language training and serving end to end, on a tiny random LLaVA and images made in the test.

A colour task ("what colour is the square?" on squares of three colours, at random sizes and places on a grey
ground) is learned in 150 CPU steps: accuracy on 30 held-out images goes from none to nearly all. The trained
checkpoint then answers through `swiftkit deploy` and the `openai` client with the image sent as a data URL,
loads in plain transformers, and the --freeze_* flags decide where the adapters go.
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
from pathlib import Path

import openai
import pytest
from hosts import registries
from test_deploy import KEY, free_port, start_server
from tiny_vlm import save_tiny_vlm

from swiftkit import api
from swiftkit.core.errors import SwiftkitError

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
QUESTION = "What colour is the square?"


def square(colour: str, rng: random.Random):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (32, 32), (128, 128, 128))
    side = rng.randint(12, 24)
    x, y = rng.randint(0, 32 - side), rng.randint(0, 32 - side)
    ImageDraw.Draw(image).rectangle([x, y, x + side, y + side], fill=COLOURS[colour])
    return image


def write_split(folder, name: str, n: int, seed: int):
    """``name.jsonl`` of ``n`` rows whose images (relative paths) are squares of a random colour."""
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        colour = rng.choice(sorted(COLOURS))
        (folder / "images").mkdir(exist_ok=True)
        square(colour, rng).save(folder / "images" / f"{name}{k}.png")
        rows.append({"messages": [{"role": "user", "content": f"<image>{QUESTION}"},
                                  {"role": "assistant", "content": colour}], "images": [f"images/{name}{k}.png"]})
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colours")
    return {"model": save_tiny_vlm(folder / "llava", "llava"), "train": write_split(folder, "train", 90, 0),
            "test": write_split(folder, "test", 30, 1), "folder": folder}


def accuracy(results_path) -> float:
    rows = [json.loads(line) for line in results_path.read_text().splitlines()]
    return sum(r["response"].strip() == r["labels"] for r in rows) / len(rows)


@pytest.fixture(scope="module")
def trained(colours):
    """The language model of the tiny LLaVA fully trained on the colour task (vision tower and projector frozen),
    and the held-out accuracy before and after."""
    folder = colours["folder"]
    before = folder / "before.jsonl"
    api.infer(model=str(colours["model"]), val_dataset=[str(colours["test"])], max_new_tokens=4,
              result_path=str(before))
    run = api.sft(model=str(colours["model"]), dataset=[str(colours["train"])], output_dir=str(folder / "out"),
                  train_type="full", max_steps=150, per_device_train_batch_size=4, learning_rate=1e-3,
                  save_steps=1000, logging_steps=50)
    ckpt = run["last_checkpoint"]
    after = folder / "after.jsonl"
    api.infer(model=ckpt, val_dataset=[str(colours["test"])], max_new_tokens=4, result_path=str(after))
    scores = {"before": accuracy(before), "after": accuracy(after)}
    print(f"colour task, held-out accuracy: {scores['before']:.2f} before, {scores['after']:.2f} after 150 steps")
    return {"ckpt": ckpt, **scores, "results": after}


def test_the_colour_of_the_square_is_learned_in_150_steps(trained):
    assert trained["before"] <= 0.4  # a random model names no colour (a lucky guess at most)
    assert trained["after"] >= 0.9, trained["after"]


def test_the_checkpoint_loads_in_plain_transformers_and_answers(trained, colours):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(trained["ckpt"])  # saved beside the weights
    model = AutoModelForImageTextToText.from_pretrained(trained["ckpt"]).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    right = 0
    rng = random.Random(7)
    for colour in sorted(COLOURS):
        inputs = processor(text=[text], images=[[square(colour, rng)]], return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        reply = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        right += reply.strip() == colour
    assert right >= 2


def data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_deploy_answers_about_an_image_sent_as_a_data_url(trained):
    from swiftkit.config.commands import DeployConfig

    port = free_port()
    cfg = DeployConfig.from_flat({"model": trained["ckpt"], "served_model_name": "colours", "api_key": KEY,
                                  "port": port, "max_new_tokens": 4})
    recipe, server, thread = start_server(cfg)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        rng = random.Random(11)
        answers = {}
        for colour in sorted(COLOURS):
            content = [{"type": "image_url", "image_url": {"url": data_url(square(colour, rng))}},
                       {"type": "text", "text": QUESTION}]
            reply = client.chat.completions.create(model="colours", messages=[{"role": "user", "content": content}],
                                                   temperature=0)
            answers[colour] = reply.choices[0].message.content.strip()
            assert reply.usage.prompt_tokens > 16  # the image's tokens are in the prompt
        assert sum(answers[c] == c for c in COLOURS) >= 2, answers
        # streamed, the same reply
        stream = client.chat.completions.create(
            model="colours", temperature=0, stream=True,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {
                "url": data_url(square("blue", random.Random(11)))}}, {"type": "text", "text": QUESTION}]}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip() in COLOURS
        # an image that is not one is a 400 naming it
        with pytest.raises(openai.BadRequestError, match="image"):
            client.chat.completions.create(model="colours", messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}},
                {"type": "text", "text": QUESTION}]}])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def adapter_parts(ckpt) -> set[str]:
    from safetensors.torch import load_file

    from swiftkit.train.tuner_params import multimodal_part

    return {multimodal_part(key) for key in load_file(f"{ckpt}/adapter_model.safetensors")}


@pytest.mark.parametrize(("flags", "parts"), [
    ({}, {"llm"}),
    ({"freeze_vit": False}, {"llm", "vision"}),
    ({"freeze_llm": True, "freeze_aligner": False}, {"aligner"}),
])
def test_the_freeze_flags_choose_where_the_adapters_go(colours, tmp_path, flags, parts):
    run = api.sft(model=str(colours["model"]), dataset=[str(colours["train"])], output_dir=str(tmp_path),
                  max_steps=1, save_steps=1, **flags)
    assert adapter_parts(run["last_checkpoint"]) == parts


def test_nothing_to_train_and_images_for_a_text_model_are_one_line_errors(colours, tmp_path, tiny_model_dir):
    with pytest.raises(SwiftkitError, match="nothing would train"):
        api.sft(model=str(colours["model"]), dataset=[str(colours["train"])], output_dir=str(tmp_path / "a"),
                freeze_llm=True, max_steps=1)
    with pytest.raises(SwiftkitError, match=r"train\.jsonl:1: the row has images, but .* is a text model"):
        api.sft(model=str(tiny_model_dir("llama", "chatml")), dataset=[str(colours["train"])],
                output_dir=str(tmp_path / "b"), max_steps=1)
    with pytest.raises(SwiftkitError, match="--packing joins rows"):
        api.sft(model=str(colours["model"]), dataset=[str(colours["train"])], output_dir=str(tmp_path / "c"),
                packing=True, max_steps=1)
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abc")


def test_videos_where_they_cannot_go_are_one_line_errors(colours, tmp_path, tiny_model_dir):
    frames = [str(colours["folder"] / f"images/train{k}.png") for k in range(3)]
    rows = [{"messages": [{"role": "user", "content": "<video>What moves?"}, {"role": "assistant", "content": "red"}],
             "videos": [frames], "rejected_response": "blue"}]
    data = tmp_path / "videos.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # LLaVA's processor takes images only
    with pytest.raises(SwiftkitError, match=r"videos\.jsonl:1: the row has videos, but the model's processor "
                                            r"\(LlavaProcessor\) takes none"):
        api.sft(model=str(colours["model"]), dataset=[str(data)], output_dir=str(tmp_path / "a"), max_steps=1)
    with pytest.raises(SwiftkitError, match=r"videos\.jsonl:1: the row has videos, but .* is a text model"):
        api.sft(model=str(tiny_model_dir("llama", "chatml")), dataset=[str(data)], output_dir=str(tmp_path / "b"),
                max_steps=1)
    with pytest.raises(SwiftkitError, match=r"videos\.jsonl:1: preference rows with videos or audio are not supported "):
        api.rlhf(rlhf_type="dpo", model=str(colours["model"]), dataset=[str(data)], output_dir=str(tmp_path / "c"),
                 max_steps=1)
    with pytest.raises(SwiftkitError, match=r"videos\.jsonl:1: the row has videos or audio: infer and deploy take "
                                            "text and images"):
        api.infer(model=str(colours["model"]), val_dataset=[str(data)], result_path=str(tmp_path / "d" / "r.jsonl"))
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abcd")


def test_preview_shows_where_the_image_tokens_go_and_lint_names_bad_images(colours, tmp_path, capsys):
    from swiftkit.cli.main import main

    assert main(["data", "preview", "--model", str(colours["model"]), "--dataset", str(colours["train"])]) == 0
    out = capsys.readouterr().out
    count = re.search(r"1 image\(s\): (\d+) image tokens \(<image>; positions (\d+)-(\d+)\)", out)
    assert count, out
    n, first, last = map(int, count.groups())
    assert n > 1 and last - first + 1 == n and f"<image>×{n}" in out
    assert re.search(r"\[\[(red|green|blue)", out)  # the reply after the image is what trains

    bad = tmp_path / "bad.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"<image>{QUESTION}"}, {"role": "assistant", "content": "red"}],
             "images": ["missing.png"]},
            {"messages": [{"role": "user", "content": f"<image><image>{QUESTION}"},
                          {"role": "assistant", "content": "red"}], "images": [str(colours["folder"] / "images/train0.png")]}]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "lint", "--model", str(colours["model"]), "--dataset", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:1: error: image 1 '{tmp_path / 'missing.png'}': no such file [bad_image]" in out
    assert re.search(rf"{re.escape(str(bad))}:2: error: 2 <image> tags in the messages but 1 image.*\[image_count\]", out)


def test_dpo_with_image_prompts_widens_the_margin(colours, tmp_path):
    from swiftkit.data.vision import VisionEncoder
    from swiftkit.models import load_processor, load_tokenizer

    others = {"red": "blue", "green": "red", "blue": "green"}
    rows = [json.loads(line) for line in colours["train"].read_text().splitlines()[:40]]
    pref = colours["folder"] / "pref.jsonl"
    pref.write_text("".join(json.dumps({**r, "rejected_response": others[r["messages"][1]["content"]]}) + "\n"
                            for r in rows))
    run = api.rlhf(rlhf_type="dpo", model=str(colours["model"]), dataset=[str(pref)], output_dir=str(tmp_path),
                   max_steps=20, per_device_train_batch_size=4, learning_rate=5e-3, logging_steps=5)
    state = json.loads((Path(run["last_checkpoint"]) / "trainer_state.json").read_text())
    margins = [e["rewards/margins"] for e in state["log_history"] if "rewards/margins" in e]
    assert margins[-1] > margins[0] + 0.1, margins
    # each batch carries the pixel features of its rows twice (chosen, then rejected sequences)
    from swiftkit.templates import get_template

    model = str(colours["model"])
    encoder = VisionEncoder(get_template(load_tokenizer(model, registry=registries().models),
                                         registry=registries().templates),
                            load_processor(model, registry=registries().models))
    row = {**rows[0], "rejected_response": "blue", "images": [str(colours["folder"] / rows[0]["images"][0])]}
    pair = encoder.encode_pair(row)
    assert len(pair["prompt_ids"]) > len(encoder.template.encode_prompt(row["messages"][:1]))  # images' tokens in
    features = encoder.pair_features([pair, pair, pair])
    assert features["pixel_values"].shape[0] == 6


def test_a_merged_lora_export_loads_with_its_processor(colours, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    run = api.sft(model=str(colours["model"]), dataset=[str(colours["train"])], output_dir=str(tmp_path / "run"),
                  max_steps=1, save_steps=1)
    merged = tmp_path / "merged"
    api.export(adapters=[run["last_checkpoint"]], merge_lora=True, output_dir=str(merged))
    processor = AutoProcessor.from_pretrained(merged)
    model = AutoModelForImageTextToText.from_pretrained(merged).eval()
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                                                                          "text": QUESTION}]}],
                                         add_generation_prompt=True)
    inputs = processor(text=[text], images=[[square("red", random.Random(0))]], return_tensors="pt",
                       add_special_tokens=False)
    assert "pixel_values" in inputs
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2


def test_full_training_keeps_the_frozen_vision_tower_and_projector(colours, tmp_path):
    from safetensors.torch import load_file

    from swiftkit.train.tuner_params import multimodal_part

    run = api.sft(model=str(colours["model"]), dataset=[str(colours["train"])], output_dir=str(tmp_path),
                  train_type="full", max_steps=2, save_steps=2, learning_rate=1e-3)
    base = load_file(f"{colours['model']}/model.safetensors")
    tuned = load_file(f"{run['last_checkpoint']}/model.safetensors")
    changed = {multimodal_part(name) for name, value in tuned.items() if not value.equal(base[name])}
    assert changed == {"llm"}
