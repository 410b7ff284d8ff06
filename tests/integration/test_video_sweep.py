"""Every vision-language family whose processor takes videos trains one LoRA step on rows with a video, on a tiny
random model: the video given as its frames and as an mp4 file (decoded with PyAV).

The families' processors need torchvision, so these run in make test's .venv-vision; elsewhere they are skipped
with the reason. ``swiftkit sft`` on a video dataset runs end to end for Qwen2-VL, and Gemma 3n (the registered
family that takes audio) trains on rows with audio clips.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from hosts import HOST, registries
from tiny_vlm import HAS_TORCHVISION, VLM_FAMILIES, save_tiny_vlm, square_image

from swiftkit.models.registry import model_types

VIDEO_FAMILIES = sorted(name for name, family in VLM_FAMILIES.items() if family.video_placeholder)
pytestmark = pytest.mark.skipif(not HAS_TORCHVISION, reason="the processors that take videos need torchvision")


def write_frames(folder, colours) -> list[str]:
    """One PNG per colour (a square moving right across a white picture), their paths."""
    paths = []
    for k, colour in enumerate(colours):
        image = square_image(colour, size=32)
        path = folder / f"frame{k}.png"
        image.rotate(90 * k).save(path)
        paths.append(str(path))
    return paths


def write_mp4(path, frames: int = 40) -> str:
    """An mp4 of ``frames`` 32x32 frames, encoded with PyAV."""
    import av
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for k in range(frames):
            pixels = np.full((32, 32, 3), 255, dtype=np.uint8)
            pixels[8:24, (k % 16):(k % 16) + 8] = (200, 30, 30)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


# Families whose batch of videos is one (videos, frames, ...) tensor: a batch's videos need the same frame count.
ONE_TENSOR = {"llava_onevision", "llava_next_video", "video_llava", "perception_lm"}


def video_rows(folder, clip_frames: int = 6) -> list[dict]:
    """Two rows: a video of 4 frame images and an mp4 of ``clip_frames`` frames."""
    frames = write_frames(folder, [(220, 30, 30), (30, 220, 30), (30, 30, 220), (220, 220, 30)])
    clip = write_mp4(folder / "clip.mp4", frames=clip_frames)
    return [
        {"messages": [{"role": "user", "content": "<video>What moves?"},
                      {"role": "assistant", "content": "A square."}], "videos": [frames], "_origin": "rows:1"},
        {"messages": [{"role": "user", "content": "Watch: <video> Which colour?"},
                      {"role": "assistant", "content": "Red."}], "videos": [clip], "_origin": "rows:2"},
    ]


def _registered_type(model_type: str) -> str:
    return next(e.type for e in model_types(registries().models).values()
                if e.model_type == model_type and "vision" in e.tags)


def test_the_families_that_take_videos_are_swept():
    assert {"qwen2_vl", "qwen2_5_vl", "llava_onevision", "internvl"} <= set(VIDEO_FAMILIES)


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_lora_step_on_rows_with_a_video(family, tmp_path):
    import torch

    from swiftkit.config import SftConfig
    from swiftkit.core.choices import choose
    from swiftkit.data.datasets import LazyEncodedDataset
    from swiftkit.models import load_model, set_num_threads
    from swiftkit.recipes import steps
    from swiftkit.templates.selection import load_tokenizer_and_template
    from swiftkit.train.collate import make_collator

    model_dir = save_tiny_vlm(tmp_path / "model", family)
    cfg = SftConfig.from_flat({"model": str(model_dir), "model_type": _registered_type(family),
                               "dataset": ["unused.jsonl"], "lora_rank": 4, "max_length": 8192})
    set_num_threads(cfg.model.num_threads)
    resolved, tok, template = load_tokenizer_and_template(cfg.model, cfg.template, registries())
    rows = video_rows(tmp_path, 4 if family in ONE_TENSOR else 6)
    encoder = steps.vision_encoder(resolved, cfg, template, (rows,))
    data = LazyEncodedDataset(rows, encoder)
    encoded = [data[0], data[1]]
    video_id = tok.convert_tokens_to_ids(encoder.processor.video_token)
    for enc, row in zip(encoded, rows):
        trained = tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100])
        assert row["messages"][1]["content"] in trained  # the labels still mark the reply after the video's tokens
        # the video's tokens are in the prompt, untrained (InternVL and SmolVLM write the frames as image tokens)
        media_ids = {video_id, encoder.processor.image_token_id if hasattr(encoder.processor, "image_token_id")
                     else tok.convert_tokens_to_ids(encoder.processor.image_token)}
        media = [lab for t, lab in zip(enc["input_ids"], enc["labels"]) if t in media_ids]
        assert len(media) >= 2 and set(media) == {-100}
    assert any(key.endswith("videos") or key == "pixel_values" for key in encoded[0])

    model = load_model(resolved, torch_dtype="float32", vision=True)
    model = choose(HOST, "tuner", "lora", model=model, config=cfg)
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    batch = make_collator(tok, padding_free=False, vision=True)(encoded)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(**batch).loss
    assert math.isfinite(loss.item()), f"{family}: loss {loss.item()}"
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(lora[n], p) for n, p in model.named_parameters() if n in lora), "no LoRA weight changed"


@pytest.mark.skipif("qwen2_vl" not in VLM_FAMILIES, reason="Qwen2-VL's processor needs torchvision")
def test_sft_trains_on_a_video_dataset_from_the_command_line(tmp_path):
    model_dir = save_tiny_vlm(tmp_path / "model", "qwen2_vl")
    rows = video_rows(tmp_path)
    data = tmp_path / "videos.jsonl"
    with data.open("w") as f:
        for row in rows:  # the videos as frame paths and as an mp4 file
            row = {k: v for k, v in row.items() if k != "_origin"}
            f.write(json.dumps(row) + "\n")
        # the same video as OpenAI-style content parts
        f.write(json.dumps({"messages": [
            {"role": "user", "content": [{"type": "video", "video": os.path.basename(rows[1]["videos"][0])},
                                         {"type": "text", "text": "What is it?"}]},
            {"role": "assistant", "content": "A clip."}]}) + "\n")
    swiftkit = [sys.executable, "-m", "swiftkit"]
    lint = subprocess.run([*swiftkit, "data", "lint", "--model", str(model_dir), "--dataset", str(data)],
                          capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0 and "0 errors" in lint.stdout, lint.stdout + lint.stderr[-2000:]
    preview = subprocess.run([*swiftkit, "data", "preview", "--model", str(model_dir), "--dataset", str(data),
                              "--index", "1"], capture_output=True, text=True, timeout=300)
    assert preview.returncode == 0 and "1 video(s)" in preview.stdout, preview.stdout + preview.stderr[-2000:]
    assert "<|video_pad|>" in preview.stdout and "[[Red." in preview.stdout
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "swiftkit", "sft", "--model", str(model_dir), "--dataset", str(data),
           "--max_steps", "2", "--per_device_train_batch_size", "3", "--lora_rank", "4", "--output_dir", str(out),
           "--logging_steps", "1", "--save_strategy", "no"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    logs = [json.loads(line) for line in (run / "logging.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in logs if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert (run / "adapter_model.safetensors").is_file() or any(run.glob("checkpoint-*/adapter_model.safetensors"))


@pytest.mark.skipif("llava_onevision" not in VLM_FAMILIES, reason="LLaVA-OneVision's processor needs torchvision")
def test_videos_of_different_lengths_in_one_tensor_batch_are_refused_not_padded(tmp_path):
    from swiftkit.config import SftConfig
    from swiftkit.data.datasets import LazyEncodedDataset
    from swiftkit.data.errors import DatasetError
    from swiftkit.recipes import steps
    from swiftkit.templates.selection import load_tokenizer_and_template
    from swiftkit.train.collate import make_collator

    model_dir = save_tiny_vlm(tmp_path / "model", "llava_onevision")
    cfg = SftConfig.from_flat({"model": str(model_dir), "model_type": _registered_type("llava_onevision"),
                               "dataset": ["unused.jsonl"]})
    resolved, tok, template = load_tokenizer_and_template(cfg.model, cfg.template, registries())
    rows = video_rows(tmp_path)
    rows[1]["videos"] = [rows[0]["videos"][0][:2]]  # 4 frames and 2 frames
    encoder = steps.vision_encoder(resolved, cfg, template, (rows,))
    data = LazyEncodedDataset(rows, encoder)
    collate = make_collator(tok, padding_free=False, vision=True)
    with pytest.raises(DatasetError, match="videos of 2 and 4 frames share a batch"):
        collate([data[0], data[1]])
    assert collate([data[1], data[1]])["pixel_values_videos"].shape[:2] == (2, 2)


@pytest.mark.skipif("gemma3n" not in VLM_FAMILIES, reason="Gemma 3n's vision tower needs timm (and torchvision)")
def test_gemma3n_trains_on_rows_with_audio_with_audio_and_an_image_and_beside_text_rows(tmp_path):
    import struct
    import wave

    import torch

    from swiftkit.config import SftConfig
    from swiftkit.core.choices import choose
    from swiftkit.data.datasets import LazyEncodedDataset
    from swiftkit.models import load_model
    from swiftkit.recipes import steps
    from swiftkit.templates.selection import load_tokenizer_and_template
    from swiftkit.train.collate import make_collator

    clips = []
    for k, seconds in enumerate((0.5, 0.8)):  # 22.05 kHz stereo: resampled to the feature extractor's 16 kHz mono
        path = tmp_path / f"clip{k}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(22050)
            values = [int(6000 * math.sin(2 * math.pi * (300 + 200 * k) * n / 22050))
                      for n in range(int(seconds * 22050))]
            out.writeframes(b"".join(struct.pack("<hh", v, v) for v in values))
        clips.append(str(path))
    picture = tmp_path / "square.png"
    square_image((200, 30, 30)).save(picture)
    rows = [
        {"messages": [{"role": "user", "content": "<audio>What do you hear?"},
                      {"role": "assistant", "content": "A tone."}], "audios": [clips[0]], "_origin": "rows:1"},
        {"messages": [{"role": "user", "content": "<image>and <audio>: which is red?"},
                      {"role": "assistant", "content": "The square."}], "images": [str(picture)],
         "audios": [clips[1]], "_origin": "rows:2"},
        {"messages": [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi."}],
         "_origin": "rows:3"},
    ]
    model_dir = save_tiny_vlm(tmp_path / "model", "gemma3n")
    cfg = SftConfig.from_flat({"model": str(model_dir), "model_type": _registered_type("gemma3n"),
                               "dataset": ["unused.jsonl"], "lora_rank": 4, "max_length": 4096})
    resolved, tok, template = load_tokenizer_and_template(cfg.model, cfg.template, registries())
    encoder = steps.vision_encoder(resolved, cfg, template, (rows,))
    data = LazyEncodedDataset(rows, encoder)
    encoded = [data[0], data[1]]
    audio_id = tok.convert_tokens_to_ids("<audio_soft_token>")
    for enc, row in zip(encoded, rows):
        trained = tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100])
        assert row["messages"][1]["content"] in trained
        assert enc["input_ids"].count(audio_id) == 64  # the processor's audio tokens, untrained
        assert audio_id not in [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100]
        assert "input_features" in enc and "input_features_mask" in enc
    assert "pixel_values" in encoded[1] and "pixel_values" not in encoded[0]
    model = choose(HOST, "tuner", "lora", model=load_model(resolved, torch_dtype="float32", vision=True), config=cfg)
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    # a batch of clips of two lengths, one row alone, and a clip beside a text row (the audio features are per clip)
    for batch in ([encoded[0], encoded[1]], [encoded[1]], [encoded[0], data[2], encoded[1]]):
        inputs = make_collator(tok, padding_free=False, vision=True)(batch)
        assert inputs["input_features"].shape[0] == sum("input_features" in row for row in batch)
        model.train()
        loss = model(**inputs).loss
        assert math.isfinite(loss.item())
        loss.backward()
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    assert any(not torch.equal(lora[n], p) for n, p in model.named_parameters() if n in lora)
