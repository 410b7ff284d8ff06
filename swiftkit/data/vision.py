"""Rows with images -> model inputs: the text template's encoding, with each image's tokens put in by the
model's own processor.

There is no second template for images. A row's ``<image>`` tags become the text the model's chat template
writes for an image part (learned once by rendering a probe with and without one, :func:`image_placeholder`),
the conversation is encoded by the text :class:`~swiftkit.templates.Template` exactly as a text row is
(labels on the assistant replies), and the rendered text goes through the processor with the images: the
processor expands each placeholder into the image's tokens and computes the pixel features, as it does at
serving time. The labels follow the expansion (:func:`expanded_labels`): a token that the expansion changes
never carries loss, and a labelled token it changes is an error rather than a silent shift.

Collation pads every feature the processor gives to the batch's largest size in each dimension and joins
the rows along the first (:func:`collate_features`): it fits both the layouts processors use, features
listed per image (LLaVA's ``pixel_values``, Qwen2-VL's patches and ``image_grid_thw``) and features with
a batch dimension (Idefics3's ``pixel_values`` and ``pixel_attention_mask``, Mllama's masks).

Videos (a row's ``videos``: each a list of frame images, or a video file decoded with PyAV) go the same way:
``<video>`` tags become the template's video placeholder and the processor puts in each video's tokens.
Families that list video patches per frame (Qwen2-VL) batch videos of any length; those that take a batch's
videos as one (videos, frames, ...) tensor (LLaVA-OneVision, LLaVA-NeXT-Video, Video-LLaVA) need the videos of a
batch to have the same number of frames. Audio clips (``audios``, decoded to mono at the feature extractor's rate)
take ``<audio>`` tags the same way (Gemma 3n).
"""

from __future__ import annotations

import copy
import difflib
import os

from swiftkit.data.encode_alignment import encode_pair
from swiftkit.data.errors import DatasetError
from swiftkit.data.media import AUDIO_TAG, IMAGE_TAG, VIDEO_TAG, load_audio, load_image, load_video
from swiftkit.templates import SequenceTooLong, TemplateError

IGNORE_INDEX = -100
_ONE = {"image": "an image", "video": "a video", "audio": "an audio clip"}
_PROBE_TEXT = "Describe this."


def _where(row: dict) -> str:
    return f"{row['_origin']}: " if isinstance(row, dict) and row.get("_origin") else ""


def image_placeholder(tokenizer, processor=None, chat_kwargs: dict | None = None, kind: str = "image") -> str:
    """The text the model's chat template writes for one image (e.g. Qwen2-VL's
    ``<|vision_start|><|image_pad|><|vision_end|>``), or with ``kind="video"`` / ``"audio"`` for one video / audio
    clip: the difference between a user turn rendered with such a part and without. The processor's
    ``image_token`` (``video_token``, ``audio_token``) where the template does not render those parts."""
    kw = dict(chat_kwargs or {})

    def render(parts: list[dict]) -> str:
        out = tokenizer.apply_chat_template([{"role": "user", "content": parts}], tokenize=False,
                                            add_generation_prompt=True, **kw)
        return out if isinstance(out, str) else ""

    try:
        with_media = render([{"type": kind}, {"type": "text", "text": _PROBE_TEXT}])
        without = render([{"type": "text", "text": _PROBE_TEXT}])
    except Exception:  # noqa: BLE001 - a template that renders string contents only
        with_media = without = ""
    if with_media and len(with_media) > len(without):
        start = len(os.path.commonprefix([with_media, without]))
        # the common suffix, within what the prefix left of the shorter rendering
        end = len(os.path.commonprefix([with_media[start:][::-1], without[start:][::-1]]))
        found = with_media[start:len(with_media) - end]
        if found.strip():
            return found
    token = getattr(processor, f"{kind}_token", None) if processor is not None else None
    if isinstance(token, str) and token:
        return token
    raise TemplateError(f"the model's chat template does not render {kind} parts and its processor names no {kind} "
                        f"token: swiftkit cannot tell where {_ONE[kind]} goes in "
                        f"the prompt (pass --template with a chat template that renders {{'type': '{kind}'}} parts)")


def with_placeholders(messages: list[dict], placeholder: str, video_placeholder: str | None = None,
                      audio_placeholder: str | None = None) -> list[dict]:
    """``messages`` with each ``<image>`` tag written as the model's image placeholder (and, given
    ``video_placeholder`` / ``audio_placeholder``, each ``<video>`` / ``<audio>`` tag as its placeholder)."""
    swaps = [(IMAGE_TAG, placeholder), (VIDEO_TAG, video_placeholder), (AUDIO_TAG, audio_placeholder)]
    swaps = [(tag, text) for tag, text in swaps if text is not None and tag != text]
    if not swaps:
        return messages
    out = []
    for m in messages:
        if isinstance(m.get("content"), str):
            content = m["content"]
            for tag, text in swaps:
                content = content.replace(tag, text)
            m = {**m, "content": content}
        out.append(m)
    return out


def expanded_labels(ids: list[int], labels: list[int], expanded: list[int], where: str = "") -> list[int]:
    """``labels`` (for ``ids``) carried over to ``expanded``, the processor's ids for the same text with the
    images' tokens put in. Tokens the expansion leaves alone keep their labels; tokens it adds or changes get
    none. A labelled token that the expansion changes (an image placeholder inside a trained reply, or a
    processor that tokenizes the text differently) is an error."""
    out = [IGNORE_INDEX] * len(expanded)
    matcher = difflib.SequenceMatcher(a=ids, b=expanded, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            out[b0:b1] = labels[a0:a1]
        elif any(label != IGNORE_INDEX for label in labels[a0:a1]):
            raise TemplateError(
                f"{where}the processor changed {a1 - a0} token(s) of a trained reply when it put in the images' "
                "tokens (images belong in user turns; a processor that tokenizes the text differently from the "
                "tokenizer cannot train with this template)")
    return out


class VisionEncoder:
    """Encodes rows that may hold images; duck-types as the text template for the datasets that encode lazily.

    ``encode(row)`` returns ``{"input_ids", "labels", **features}`` (the features are the processor's tensors
    for this row: ``pixel_values``, ``image_grid_thw``, ...). ``max_length`` applies to the expanded ids:
    a longer row is :class:`~swiftkit.templates.SequenceTooLong` (skipped like a long text row); rows with
    images are never cut, since a cut could fall inside an image's tokens.
    """

    def __init__(self, template, processor):
        self.template = template
        self.processor = processor
        self.placeholder = image_placeholder(template.tokenizer, processor, template.chat_kwargs)
        self._placeholders: dict[str, str] = {}  # video and audio: learned with the first row that holds them
        self._nested: bool | None = None  # how the processor takes a prompt's images, once known
        self._text = copy.copy(template)
        self._text.max_length = None  # the limit applies after the images are put in

    def __getattr__(self, name):  # tokenizer, max_length, truncation_strategy, chat_template, ...
        if name in ("template", "processor", "_nested", "_text", "_placeholders"):
            raise AttributeError(name)
        return getattr(self.template, name)

    def media_placeholder(self, kind: str, where: str = "") -> str:
        """The text the chat template writes for one video or audio clip (``kind``); a processor that takes no such
        input is an error."""
        if kind not in self._placeholders:
            part = "video_processor" if kind == "video" else "feature_extractor"
            if getattr(self.processor, part, None) is None:
                families = ("Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision, InternVL, ..." if kind == "video"
                            else "Gemma 3n")
                raise DatasetError(f"{where}the row has {kind}{'s' if kind == 'video' else ''}, but the model's "
                                   f"processor ({type(self.processor).__name__}) takes none: train them on a family "
                                   f"that takes them ({families})")
            tokenizer, kwargs = self.template.tokenizer, self.template.chat_kwargs
            self._placeholders[kind] = image_placeholder(tokenizer, self.processor, kwargs, kind=kind)
        return self._placeholders[kind]

    def encode(self, row: dict) -> dict:
        images = row.get("images") or []
        videos = row.get("videos") or []
        audios = row.get("audios") or []
        if not images and not videos and not audios:
            return self.template.encode(row)
        where = _where(row)
        messages = with_placeholders(row["messages"], self.placeholder,
                                     self.media_placeholder("video", where) if videos else None,
                                     self.media_placeholder("audio", where) if audios else None)
        text_row = {key: value for key, value in row.items() if key not in ("images", "videos", "audios")}
        enc, text = self._text.encode_with_text({**text_row, "messages": messages})
        at = where.rstrip(": ")
        pictures = [load_image(ref, at) for ref in images]
        clips = [load_video(ref, at) for ref in videos]
        rate = self.processor.feature_extractor.sampling_rate if audios else None
        sounds = [load_audio(ref, rate, at) for ref in audios]
        features = self.processor_inputs(text, pictures, where, clips, sounds)
        expanded = features.pop("input_ids")[0].tolist()
        labels = expanded_labels(enc["input_ids"], enc["labels"], expanded, where)
        if "token_type_ids" in features and self._suffix_types():
            # PaliGemma attends both ways over its prefix (token type 0) and causally over the suffix it
            # learns to write (1): the trained replies are the suffix
            features["token_type_ids"] = features["token_type_ids"].new_tensor([[int(x != IGNORE_INDEX)
                                                                                 for x in labels]])
        limit = self.template.max_length
        if limit is not None and len(expanded) > limit:
            raise SequenceTooLong(f"{where}{len(expanded)} tokens with its images' and videos' tokens is over "
                                  f"max_length {limit}")
        return {"input_ids": expanded, "labels": labels, **features}

    def encode_pair(self, row: dict) -> dict:
        """A preference row with images (DPO): the prompt ids with the images' tokens put in, the chosen and
        rejected reply ids, and what the collator needs to make the pixel features again per batch
        (``image_refs``, ``prompt_text``: features are not stored with the encoded rows)."""
        where = _where(row)
        if row.get("videos") or row.get("audios"):
            raise TemplateError(f"{where}preference rows with videos or audio are not supported yet: DPO takes rows "
                                "with images (sft takes videos and audio)")
        text_row = {key: value for key, value in row.items() if key != "images"}
        text_row["messages"] = with_placeholders(row["messages"], self.placeholder)
        pair = encode_pair(self._text, text_row)
        prompt_text = self.template.prompt_text(text_row["messages"][:-1], text_row.get("tools"))
        if list(self.template.tokenizer(prompt_text, add_special_tokens=False)["input_ids"]) != pair["prompt_ids"]:
            raise TemplateError(f"{where}the prompt's tokens change where the reply starts (the tokenizer merges "
                                "across the boundary): this row cannot be paired with its images")
        images = [load_image(ref, where.rstrip(": ")) for ref in row["images"]]
        expanded = self.processor_inputs(prompt_text, images, where)["input_ids"][0].tolist()
        expanded_labels(pair["prompt_ids"], [IGNORE_INDEX] * len(pair["prompt_ids"]), expanded, where)
        limit = self.template.max_length
        longest = len(expanded) + max(len(pair["chosen_ids"]), len(pair["rejected_ids"]))
        if limit is not None and longest > limit:
            raise SequenceTooLong(f"{where}{longest} tokens with its images' tokens is over max_length {limit}")
        return {**pair, "prompt_ids": expanded, "image_refs": list(row["images"]), "prompt_text": prompt_text}

    def pair_features(self, examples: list[dict]) -> dict:
        """The pixel features of a batch of encoded preference rows as TRL's preference collator lays the batch
        out: every row twice (first the chosen halves, then the rejected), each sequence its prompt then its
        reply; per-token features cover the prompt, the reply positions are zeros."""
        import torch  # defers torch

        halves = []
        for reply_key in ("chosen_ids", "rejected_ids"):
            for ex in examples:
                if not ex.get("image_refs"):  # a text row among rows with images
                    halves.append({})
                    continue
                pictures = [load_image(ref) for ref in ex["image_refs"]]
                features = self.processor_inputs(ex["prompt_text"], pictures)
                n_prompt = features.pop("input_ids").shape[1]
                reply = len(ex[reply_key])
                for key, value in features.items():
                    if value.dim() == 2 and value.shape == (1, n_prompt):  # a per-token feature
                        fill = 1 if key == "token_type_ids" and self._suffix_types() else 0
                        features[key] = torch.cat([value, value.new_full((1, reply), fill)], dim=1)
                halves.append(features)
        return collate_features(halves)

    def _suffix_types(self) -> bool:
        return type(self.processor).__name__ == "PaliGemmaProcessor"

    def processor_inputs(self, text: str, images: list, where: str = "", videos: list | None = None,
                         audios: list | None = None) -> dict:
        """The processor's tensors for one rendered text, its images, its videos (each a list of frames) and its
        audio clips (each a mono array at the feature extractor's rate): ``input_ids`` expanded, and the
        features."""
        # Processors take one prompt's images as a list per prompt (Idefics3, Mllama) or as one flat list (some
        # single-image families); the form that works first is kept.
        forms = ([self._nested] if self._nested is not None else [True, False]) if images else [False]
        # the frames are chosen already (all of a list of frames; a file's, evenly up to MAX_VIDEO_FRAMES): the video
        # processor is not to sample them again (GLM-4V's would, by the frame rate, which a list of frames lacks)
        media = {"videos": videos, "do_sample_frames": False} if videos else {}
        if audios:
            media["audio"] = audios
        failure = None
        for nested in forms:
            if images:
                media["images"] = [images] if nested else images
            try:
                out = self.processor(text=[text], return_tensors="pt", add_special_tokens=False, **media)
            except Exception as exc:  # noqa: BLE001 - named with the row below
                failure = failure or exc
                continue
            if images:
                self._nested = nested
            # the encoder's labels replace any the processor makes (PaliGemma labels every text token)
            return {key: value for key, value in out.items() if key not in ("attention_mask", "labels")}
        what = ", ".join(f"{len(found)} {name}(s)" for found, name in ((images, "image"), (videos, "video"),
                                                                     (audios, "audio clip")) if found)
        raise DatasetError(f"{where}the model's processor failed on this row's {what}: "
                           f"{type(failure).__name__}: {failure}") from failure

    def prompt_inputs(self, messages: list[dict], images: list, tools=None) -> dict:
        """Generation inputs for a prompt with images: ``input_ids`` (1, n) and the features."""
        text = self.template.prompt_text(with_placeholders(messages, self.placeholder), tools=tools)
        return self.processor_inputs(text, images)


def collate_features(rows: list[dict]):
    """The batch of the processor features of ``rows`` (each a dict of tensors, possibly empty): every key
    padded with zeros to the largest size in each dimension but the first, then joined along the first."""
    import torch  # defers torch
    from torch.nn import functional as F  # defers torch

    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    out = {}
    for key in keys:
        values = [torch.as_tensor(row[key]) for row in rows if key in row]
        if not values:
            continue
        if values[0].dim() == 0:
            out[key] = torch.stack(values)
            continue
        frames = sorted({v.shape[1] for v in values}) if key.endswith("_videos") and values[0].dim() >= 5 else []
        if len(frames) > 1:  # (videos, frames, channels, height, width): padding would add blank frames
            raise DatasetError(f"videos of {' and '.join(map(str, frames))} frames share a batch, and this model takes "
                               "a batch's videos as one tensor: give every video the same number of frames, or train "
                               "with --per_device_train_batch_size 1")
        sizes = [max(v.shape[d] for v in values) for d in range(values[0].dim())]
        padded = []
        for v in values:
            pad = []
            for d in reversed(range(1, v.dim())):
                pad += [0, sizes[d] - v.shape[d]]
            padded.append(F.pad(v, pad) if any(pad) else v)
        out[key] = torch.cat(padded, dim=0)
    return out
