"""Rows with images: the canonical form, where relative paths resolve, the checks, opening images, lint."""

from __future__ import annotations

import base64
import copy
import http.server
import io
import json
import os
import pickle
import socket
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hosts import empty_registries
from PIL import Image

from swiftkit.cli.main import main
from swiftkit.data import DatasetError, load_rows
from swiftkit.data.alignment import to_kto_rows, to_preference_row
from swiftkit.data.convert import RowError, to_messages_row
from swiftkit.data.loader import BadRowsError
from swiftkit.data.media import IMAGE_TAG, check_images, count_image_tags, load_image, parts_to_tags
from swiftkit.data.readers import read_file, source_folder

EMPTY = empty_registries()
RED, BLUE = (255, 0, 0), (0, 0, 255)


def png(path, color=RED, size=(4, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "PNG")
    return path


def png_bytes(color=RED, size=(4, 3), fmt="PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def jsonl(path, rows) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def chat(user=f"{IMAGE_TAG}What colour is this?", reply="Red."):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def bad_rows(specs) -> list[RowError]:
    with pytest.raises(BadRowsError) as info:
        load_rows(specs, registries=EMPTY)
    return info.value.problems


# --- the canonical row ---------------------------------------------------------------------------

def test_relative_paths_resolve_against_the_dataset_files_folder(tmp_path, monkeypatch):
    cat = png(tmp_path / "ds" / "img" / "cat.png")
    dog = png(tmp_path / "elsewhere" / "dog.png", BLUE)
    path = jsonl(tmp_path / "ds" / "data.jsonl", [
        {"messages": chat(), "images": ["img/cat.png"]},
        {"messages": chat(f"{IMAGE_TAG}{IMAGE_TAG}Both?"), "images": ["img/cat.png", str(dog)]},  # absolute: kept
        {"messages": chat(), "images": "img/cat.png"},  # one image as a string
    ])
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the dataset's folder
    rows = load_rows([os.path.relpath(path)], registries=EMPTY)
    folder = str(tmp_path / "ds")
    assert [row["images"] for row in rows] == [[os.path.join(folder, "img/cat.png")],
                                               [os.path.join(folder, "img/cat.png"), str(dog)],
                                               [os.path.join(folder, "img/cat.png")]]
    assert rows[0]["messages"] == chat()  # the tags stay in the text
    assert list(rows[0]) == ["messages", "images", "_origin"]
    assert load_image(rows[0]["images"][0]).getpixel((0, 0)) == RED and os.path.isfile(cat)


def test_each_file_of_a_folder_resolves_against_its_own_folder(tmp_path):
    png(tmp_path / "data" / "part1" / "a.png")
    png(tmp_path / "data" / "part2" / "a.png", BLUE)
    jsonl(tmp_path / "data" / "part1" / "train.jsonl", [{"messages": chat(), "images": ["a.png"]}])
    jsonl(tmp_path / "data" / "part2" / "train.jsonl", [{"messages": chat(reply="Blue."), "images": ["a.png"]}])
    rows = load_rows([str(tmp_path / "data")], registries=EMPTY)
    assert [row["images"] for row in rows] == [[str(tmp_path / "data" / "part1" / "a.png")],
                                               [str(tmp_path / "data" / "part2" / "a.png")]]


def test_every_row_format_keeps_its_images_column(tmp_path):
    png(tmp_path / "a.png")
    path = jsonl(tmp_path / "formats.jsonl", [
        {"conversations": [{"from": "human", "value": f"{IMAGE_TAG}Colour?"}, {"from": "gpt", "value": "Red."}],
         "images": ["a.png"]},
        {"query": f"{IMAGE_TAG}Colour?", "response": "Red.", "images": ["a.png"]},
        {"instruction": f"{IMAGE_TAG}Name the colour.", "output": "Red.", "images": ["a.png"]},
        {"prompt": f"{IMAGE_TAG}Colour?", "completion": "Red.", "images": [{"path": "a.png"}]},
    ])
    rows = load_rows([path], registries=EMPTY)
    assert [row["images"] for row in rows] == [[str(tmp_path / "a.png")]] * 4
    assert [count_image_tags(row["messages"]) for row in rows] == [1, 1, 1, 1]


def test_csv_and_parquet_rows_with_images(tmp_path):
    png(tmp_path / "a.png")
    csv = tmp_path / "rows.csv"
    csv.write_text('query,response,images\n<image>Colour?,Red.,a.png\n<image><image>Colours?,Red.,"[""a.png"", ""a.png""]"\n')
    assert [row["images"] for row in load_rows([str(csv)], registries=EMPTY)] == [
        [str(tmp_path / "a.png")], [str(tmp_path / "a.png")] * 2]
    table = pa.table({"query": [f"{IMAGE_TAG}Colour?"], "response": ["Red."],
                      "images": [[{"bytes": png_bytes(), "path": None}]]})  # what a hub image column holds
    pq.write_table(table, tmp_path / "rows.parquet")
    (row,) = load_rows([str(tmp_path / "rows.parquet")], registries=EMPTY)
    assert row["images"][0].startswith("data:image/png;base64,")
    assert load_image(row["images"][0]).size == (4, 3)


def test_data_urls_and_raw_base64_become_data_urls(tmp_path):
    raw = base64.b64encode(png_bytes(BLUE)).decode()
    jpeg = base64.b64encode(png_bytes(RED, fmt="JPEG")).decode()
    path = jsonl(tmp_path / "inline.jsonl", [{"messages": chat(IMAGE_TAG * 4 + "Colours?"), "images": [
        f"data:image/png;base64,{raw}", raw, {"bytes": jpeg}, {"url": "https://example.com/cat.png"}]}])
    (row,) = load_rows([path], registries=EMPTY)
    assert row["images"] == [f"data:image/png;base64,{raw}", f"data:image/png;base64,{raw}",
                             f"data:image/jpeg;base64,{jpeg}", "https://example.com/cat.png"]
    image = load_image(row["images"][1])
    assert image.mode == "RGB" and image.size == (4, 3) and image.getpixel((1, 1)) == BLUE
    assert load_image(raw).getpixel((0, 0)) == BLUE  # raw base64 opens too


def test_content_parts_become_tags_in_order(tmp_path):
    png(tmp_path / "a.png")
    b64 = "data:image/png;base64," + base64.b64encode(png_bytes(BLUE)).decode()
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "First "},
                                     {"type": "image_url", "image_url": {"url": "a.png", "detail": "low"}},
                                     {"type": "text", "text": " then "},
                                     {"type": "image", "image": b64}]},
        {"role": "assistant", "content": "Red, then blue."},
        {"role": "user", "content": [{"type": "image_url", "image_url": "https://example.com/c.png"},
                                     {"type": "text", "text": "And this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Green."}]},
    ]
    path = jsonl(tmp_path / "parts.jsonl", [{"messages": messages},
                                           {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                                                         {"role": "assistant", "content": "Hello"}]}])
    row, text_only = load_rows([path], registries=EMPTY)
    assert [m["content"] for m in row["messages"]] == [
        "Be brief.", f"First {IMAGE_TAG} then {IMAGE_TAG}", "Red, then blue.", f"{IMAGE_TAG}And this?", "Green."]
    assert row["images"] == [str(tmp_path / "a.png"), b64, "https://example.com/c.png"]
    assert text_only == {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
                         "_origin": f"{path}:2"}  # no images key


def test_parts_to_tags_for_requests():
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.org/a.png"}},
                                             {"type": "text", "text": "What is it?"}]},
                {"role": "assistant", "content": "A cat."}]
    flat, media = parts_to_tags(messages, "request")
    assert flat == [{"role": "user", "content": f"{IMAGE_TAG}What is it?"}, messages[1]]
    assert media == {"images": ["https://x.org/a.png"], "videos": [], "audios": []}
    assert isinstance(messages[0]["content"], list)  # input untouched
    with pytest.raises(DatasetError, match=r"^request: messages\[0\]\.content\[0\]: unknown content part type"):
        parts_to_tags([{"role": "user", "content": [{"type": "file", "file": "x"}]}], "request")


def test_text_rows_are_unchanged(tmp_path):
    rows = [{"messages": chat("Write <image> in XML.", "<image/>")}, {"query": "q", "response": "r", "images": []}]
    path = jsonl(tmp_path / "text.jsonl", rows)
    assert load_rows([path], registries=EMPTY) == [
        {"messages": rows[0]["messages"], "_origin": f"{path}:1"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}], "_origin": f"{path}:2"}]


def test_preference_and_kto_rows_carry_the_prompts_images(tmp_path):
    png(tmp_path / "a.png")
    prompt = {"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "Colour?"}]}
    (row,) = read_file(jsonl(tmp_path / "pairs.jsonl", [{
        "chosen": [prompt, {"role": "assistant", "content": "Red."}],
        "rejected": [prompt, {"role": "assistant", "content": "Blue."}]}]))
    out = to_preference_row(row)
    assert out["images"] == [str(tmp_path / "a.png")] and out["rejected_response"] == "Blue."
    assert [row["images"] for row in to_kto_rows(row)] == [[str(tmp_path / "a.png")]] * 2


def test_origins_keep_their_folder_through_copies_and_pickles(tmp_path):
    (row,) = read_file(jsonl(tmp_path / "d.jsonl", [{"query": "q", "response": "r"}]))
    assert source_folder(row) == str(tmp_path) and row["_origin"] == f"{tmp_path / 'd.jsonl'}:1"
    for other in (copy.deepcopy(row), pickle.loads(pickle.dumps(row))):
        assert source_folder(other) == str(tmp_path) and other == row
    assert json.dumps(row["_origin"]) == json.dumps(f"{tmp_path / 'd.jsonl'}:1")
    assert source_folder({"_origin": "hub:row 1"}) is None


# --- what conversion refuses ---------------------------------------------------------------------

def test_tag_count_mismatch_names_the_row(tmp_path):
    png(tmp_path / "a.png")
    path = jsonl(tmp_path / "count.jsonl", [
        {"messages": chat(), "images": ["a.png"]},
        {"messages": chat(IMAGE_TAG * 3 + "Three?"), "images": ["a.png", "a.png"]},
        {"messages": chat("No tag here"), "images": ["a.png"]},
    ])
    problems = bad_rows([path])
    assert [(p.origin, p.problem, p.kind) for p in problems] == [
        (f"{path}:2", "3 <image> tags in the messages but 2 images", "image_count"),
        (f"{path}:3", "0 <image> tags in the messages but 1 image: put an <image> tag in a user turn where each "
         "image goes", "image_count"),
    ]


def test_images_in_assistant_replies_are_refused(tmp_path):
    path = jsonl(tmp_path / "reply.jsonl", [
        {"messages": chat(reply=f"Here: {IMAGE_TAG}"), "images": ["a.png"]},
        {"messages": chat(), "rejected_response": f"{IMAGE_TAG}", "images": ["a.png"]},
    ])
    problems = bad_rows([path])
    assert [(p.origin, p.problem, p.kind) for p in problems] == [
        (f"{path}:1", "messages[1]: images in assistant replies are not supported: put them in user turns",
         "image_in_reply"),
        (f"{path}:2", "'rejected_response': images in assistant replies are not supported: put them in user turns",
         "image_in_reply"),
    ]


# --- audio ---------------------------------------------------------------------------------------

def wav(path, seconds: float = 0.5, rate: int = 8000, channels: int = 2) -> str:
    """A 16-bit PCM wav of a 440 Hz tone, written with the standard library."""
    import math
    import struct
    import wave

    frames = int(seconds * rate)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * k / rate)) for k in range(frames))
        out.writeframes(b"".join(struct.pack("<" + "h" * channels, *([v] * channels)) for v in samples))
    return str(path)


def test_audio_columns_and_parts_become_canonical_refs(tmp_path):
    (tmp_path / "a").mkdir()
    clip = wav(tmp_path / "a" / "hi.wav")
    data = base64.b64encode(Path(clip).read_bytes()).decode()
    path = jsonl(tmp_path / "audio.jsonl", [
        {"messages": chat("<audio>Who speaks?"), "audios": "a/hi.wav"},
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": data,
                                                                                          "format": "wav"}},
                                                   {"type": "text", "text": "and"},
                                                   {"type": "audio_url", "audio_url": {"url": "https://x.org/a.mp3"}}]},
                      {"role": "assistant", "content": "Two."}]},
    ])
    rows = load_rows([path], registries=EMPTY)
    assert rows[0]["audios"] == [clip] and "images" not in rows[0] and "videos" not in rows[0]
    assert rows[1]["messages"][0]["content"] == "<audio>and<audio>"
    assert rows[1]["audios"] == [f"data:audio/wav;base64,{data}", "https://x.org/a.mp3"]
    problems = bad_rows([jsonl(tmp_path / "bad.jsonl", [
        {"messages": chat("Who?"), "audios": ["a/hi.wav"]},
        {"messages": chat("<audio>?"), "audios": [{"data": data, "format": "midi"}]},
    ])])
    assert [(p.kind, p.problem) for p in problems] == [
        ("audio_count", "0 <audio> tags in the messages but 1 audio clip: put an <audio> tag in a user turn where "
                        "each audio clip goes"),
        ("audio_ref", "audios[0]: audio data must be a base64 string with a 'format' of aac, flac, m4a, mp3, ogg, "
                      "opus, wav, webm"),
    ]


def test_load_audio_resamples_to_mono_at_the_asked_rate(tmp_path):
    from swiftkit.data.media import load_audio

    clip = wav(tmp_path / "tone.wav", seconds=0.5, rate=8000, channels=2)
    samples = load_audio(clip, 16000)
    assert samples.ndim == 1 and str(samples.dtype) == "float32"
    assert abs(len(samples) - 8000) < 400  # 0.5 s at 16 kHz
    assert 0.15 < float(abs(samples).max()) < 0.35  # 8000 / 32768
    data_url = "data:audio/wav;base64," + base64.b64encode(Path(clip).read_bytes()).decode()
    assert len(load_audio(data_url, 8000)) == pytest.approx(len(samples) / 2, abs=200)
    with pytest.raises(DatasetError, match=r"^rows:2: audio .*missing.wav': no such file$"):
        load_audio(str(tmp_path / "missing.wav"), 16000, "rows:2")
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(DatasetError, match=r"text.wav': cannot be read as audio: "):
        load_audio(str(tmp_path / "text.wav"), 16000)


def test_lint_names_unusable_audio(tmp_path, capsys):
    wav(tmp_path / "ok.wav")
    path = jsonl(tmp_path / "data.jsonl", [
        {"messages": chat("<audio>?"), "audios": ["ok.wav"]},
        {"messages": chat("<audio>?"), "audios": ["gone.wav"]},
    ])
    assert main(["data", "lint", "--dataset", path]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"{path}:")]
    assert problems == [f"{path}:2: error: audio 1 '{tmp_path / 'gone.wav'}': no such file [bad_audio]"]


# --- videos --------------------------------------------------------------------------------------

def mp4(path, frames: int, size: int = 16) -> str:
    """An mp4 of ``frames`` frames (frame k is grey level 3k), encoded with PyAV."""
    import av
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for k in range(frames):
            pixels = np.full((size, size, 3), 3 * k, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def test_videos_as_files_frames_and_parts_become_canonical_refs(tmp_path):
    frames = [str(png(tmp_path / "f" / f"{k}.png")) for k in range(3)]
    path = jsonl(tmp_path / "videos.jsonl", [
        {"messages": chat("<video>What happens?"), "videos": ["clips/a.mp4"]},
        {"messages": chat("<video><video>Same?"), "videos": [["f/0.png", "f/1.png", "f/2.png"],
                                                            {"frames": ["f/0.png"]}]},
        {"messages": chat("<image>and <video>?"), "images": ["f/0.png"], "videos": "https://x.org/v.mp4"},
        {"messages": [{"role": "user", "content": [{"type": "video", "video": ["f/0.png", "f/1.png"]},
                                                   {"type": "text", "text": "and"},
                                                   {"type": "video_url", "video_url": {"url": "file:///v/b.mp4"}}]},
                      {"role": "assistant", "content": "Both."}]},
    ])
    rows = load_rows([path], registries=EMPTY)
    assert rows[0]["videos"] == [str(tmp_path / "clips" / "a.mp4")] and "images" not in rows[0]
    assert rows[1]["videos"] == [frames, frames[:1]]
    assert (rows[2]["images"], rows[2]["videos"]) == ([frames[0]], ["https://x.org/v.mp4"])
    assert rows[3]["messages"][0]["content"] == "<video>and<video>"
    assert rows[3]["videos"] == [frames[:2], "/v/b.mp4"]


@pytest.mark.parametrize("row, problem, kind", [
    ({"messages": chat("What happens?"), "videos": ["a.mp4"]},
     "0 <video> tags in the messages but 1 video: put a <video> tag in a user turn where each video goes",
     "video_count"),
    ({"messages": chat("<video>?", "See <video>"), "videos": ["a.mp4"]},
     "messages[1]: videos in assistant replies are not supported: put them in user turns", "video_in_reply"),
    ({"messages": chat("<video>?"), "videos": ["data:video/mp4;base64,AAAA"]},
     "videos[0]: a video is a file's local path or http(s) URL, or a list of frame images; got "
     "'data:video/mp4;base64,AAAA...'", "video_ref"),
    ({"messages": chat("<video>?"), "videos": [[]]}, "videos[0]: a video given as frames needs at least one frame",
     "video_ref"),
    ({"messages": chat("<video>?"), "videos": [7]},
     "videos[0] must be a video file's path or URL, or a list of frames; got int", "wrong_type"),
])
def test_video_rows_of_no_usable_form(tmp_path, row, problem, kind):
    path = jsonl(tmp_path / "refs.jsonl", [row])
    (error,) = bad_rows([path])
    assert (error.origin, error.problem, error.kind) == (f"{path}:1", problem, kind)


def test_load_video_decodes_a_file_evenly_and_opens_frames(tmp_path):
    from swiftkit.data.media import MAX_VIDEO_FRAMES, load_video

    short = load_video(mp4(tmp_path / "short.mp4", 5))
    assert len(short) == 5 and short[0].size == (16, 16) and short[0].mode == "RGB"
    long = load_video(mp4(tmp_path / "long.mp4", 2 * MAX_VIDEO_FRAMES + 8))
    assert len(long) == MAX_VIDEO_FRAMES
    # evenly over the whole video: the last frame kept is near the end (grey level 3k, lossy)
    assert long[-1].getpixel((8, 8))[0] > 3 * (2 * MAX_VIDEO_FRAMES) - 20
    frames = [str(png(tmp_path / f"{k}.png", color=(k, k, k))) for k in range(3)]
    assert [f.getpixel((0, 0)) for f in load_video(frames)] == [(0, 0, 0), (1, 1, 1), (2, 2, 2)]
    with pytest.raises(DatasetError, match=r"^rows:3: video .*missing.mp4': no such file$"):
        load_video(str(tmp_path / "missing.mp4"), "rows:3")
    with pytest.raises(DatasetError, match=r"^video '2 frames from .*0.png': frame 2 .*nope.png': no such file$"):
        load_video([frames[0], str(tmp_path / "nope.png")])
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(DatasetError, match=r"text.mp4': cannot be read as a video: "):
        load_video(str(tmp_path / "text.mp4"))


def test_lint_names_unusable_videos_and_counts(tmp_path, capsys):
    png(tmp_path / "f" / "0.png")
    mp4(tmp_path / "ok.mp4", 3)
    path = jsonl(tmp_path / "data.jsonl", [
        {"messages": chat("<video>?"), "videos": ["ok.mp4"]},
        {"messages": chat("<video>?"), "videos": [["f/0.png", "f/gone.png"]]},
        {"messages": chat("<video><video>?"), "videos": ["ok.mp4"]},
        {"messages": chat("<video>?"), "videos": ["missing.mp4"]},
    ])
    assert main(["data", "lint", "--dataset", path]) == 1
    out = capsys.readouterr().out.splitlines()
    problems = [line for line in out if line.startswith(f"{path}:")]
    assert problems == [
        f"{path}:2: error: video 1 '2 frames from {tmp_path / 'f' / '0.png'}': frame 2 "
        f"'{tmp_path / 'f' / 'gone.png'}': no such file [bad_video]",
        f"{path}:3: error: 2 <video> tags in the messages but 1 video [video_count]",
        f"{path}:4: error: video 1 '{tmp_path / 'missing.mp4'}': no such file [bad_video]",
    ]


def test_a_text_template_refuses_rows_with_videos(tmp_path):
    from tiny import make_tokenizer

    from swiftkit.templates import Template, TemplateError

    tok = make_tokenizer()
    template = Template(tok, "mine", tok.chat_template)
    row = {"messages": chat("<video>?"), "videos": ["/v/a.mp4"], "_origin": "d.jsonl:2"}
    with pytest.raises(TemplateError, match="d.jsonl:2: the row has images, videos or audio: it is encoded with the model's"):
        template.encode(row)


@pytest.mark.parametrize("images, problem, kind", [
    ([7], "images[0] must be a path, URL or base64 string, or an object with 'path', 'bytes' or 'url'; got int",
     "wrong_type"),
    (["ok.png", None], "images[1] must be a path, URL or base64 string, or an object with 'path', 'bytes' or 'url'; "
     "got NoneType", "wrong_type"),
    ([{"name": "x.png"}], "images[0]: an image object needs 'path', 'bytes' or 'url' (found keys ['name'])",
     "image_ref"),
    (["ftp://host/x.png"], "images[0]: unsupported URL scheme 'ftp' ('ftp://host/x.png'); give a local path, an "
     "http(s) URL, a data URL or base64", "image_ref"),
    (["data:text/plain;base64,aGk="], "images[0]: a data URL must be data:image/<format>;base64,<data>, got "
     "'data:text/plain;base64,aGk=...'", "image_ref"),
])
def test_refs_of_no_usable_form(tmp_path, images, problem, kind):
    path = jsonl(tmp_path / "refs.jsonl", [{"messages": chat(IMAGE_TAG * len(images) + "?"), "images": images}])
    (error,) = bad_rows([path])
    assert (error.origin, error.problem, error.kind) == (f"{path}:1", problem, kind)


def test_images_both_as_column_and_parts_are_refused():
    row = {"messages": [{"role": "user", "content": [{"type": "image", "image": "/x/a.png"}]},
                        {"role": "assistant", "content": "ok"}], "images": ["/x/b.png"], "_origin": "d.jsonl:4"}
    with pytest.raises(RowError, match=r"^d.jsonl:4: the row gives images both in 'images' and as content parts"):
        to_messages_row(row)


# --- opening images ------------------------------------------------------------------------------

def test_load_image_errors_name_the_place_and_the_image(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(DatasetError) as info:
        load_image(str(missing), "data.jsonl:3")
    assert str(info.value) == f"data.jsonl:3: image '{missing}': no such file"
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DatasetError, match=rf"^data.jsonl:4: image '{text}': cannot be read as an image: "):
        load_image(str(text), "data.jsonl:4")
    truncated = tmp_path / "half.png"
    truncated.write_bytes(png_bytes(size=(64, 64))[:60])
    with pytest.raises(DatasetError, match="cannot be read as an image: "):
        load_image(str(truncated))
    with pytest.raises(DatasetError, match=r"^x:1: image 'data:image/png;base64,\$\$\$\$\$\$\$\$\$\$\$\$\$\$\$\$\$\$"
                                           r"\.\.\.': invalid base64"):
        load_image("data:image/png;base64," + "$" * 100, "x:1")
    with pytest.raises(DatasetError, match=rf"^image '{tmp_path}': is a folder, not an image file$"):
        load_image(str(tmp_path))


@pytest.fixture
def image_server(tmp_path, monkeypatch):
    for name in ("no_proxy", "NO_PROXY"):  # a proxy in the environment must not take the local requests
        monkeypatch.setenv(name, "127.0.0.1")
    png(tmp_path / "www" / "cat.png", BLUE)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"))  # noqa: E731
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_load_image_over_http(image_server):
    assert load_image(f"{image_server}/cat.png").getpixel((0, 0)) == BLUE
    with pytest.raises(DatasetError, match=rf"^r:1: image '{image_server}/dog.png': cannot download it: HTTP 404"):
        load_image(f"{image_server}/dog.png", "r:1")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DatasetError, match=rf"^image 'http://127.0.0.1:{port}/a.png': cannot download it: "):
        load_image(f"http://127.0.0.1:{port}/a.png")


def test_load_image_file_urls_and_modes(tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (2, 2), (0, 255, 0, 128)).save(path)
    image = load_image(path.as_uri())
    assert image.mode == "RGB" and image.size == (2, 2)


def test_check_images_lists_each_unusable_image(tmp_path):
    good = png(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    row = {"messages": chat(IMAGE_TAG * 3), "images": [str(good), str(tmp_path / "gone.png"), str(tmp_path / "bad.png")]}
    problems = check_images(row)
    assert problems[0] == f"image 2 '{tmp_path / 'gone.png'}': no such file"
    assert problems[1].startswith(f"image 3 '{tmp_path / 'bad.png'}': cannot be read as an image: ")
    assert len(problems) == 2 and check_images({"messages": chat("hi")}) == []


# --- lint ----------------------------------------------------------------------------------------

def test_lint_opens_every_image_and_names_the_row(tmp_path, capsys):
    png(tmp_path / "img" / "a.png")
    (tmp_path / "img" / "broken.png").write_text("text")
    path = jsonl(tmp_path / "data.jsonl", [
        {"messages": chat(), "images": ["img/a.png"]},
        {"messages": chat(reply="Blue."), "images": ["img/missing.png"]},
        {"messages": chat(IMAGE_TAG * 2 + "Both?"), "images": ["img/a.png"]},
        {"messages": chat(reply="Green."), "images": ["img/broken.png"]},
    ])
    assert main(["data", "lint", "--dataset", path]) == 1
    out = capsys.readouterr().out.splitlines()
    problems = [line for line in out if line.startswith(f"{path}:")]
    assert problems[:2] == [
        f"{path}:2: error: image 1 '{tmp_path / 'img' / 'missing.png'}': no such file [bad_image]",
        f"{path}:3: error: 2 <image> tags in the messages but 1 image [image_count]",
    ]
    assert problems[2].startswith(f"{path}:4: error: image 1 '{tmp_path / 'img' / 'broken.png'}': cannot be read "
                                  "as an image: ") and problems[2].endswith("[bad_image]")
    assert len(problems) == 3
    assert "  error   bad_image           2" in out and "  error   image_count         1" in out
    assert out[-1].startswith("3 errors, 0 warnings in 4 rows (3 usable)")
