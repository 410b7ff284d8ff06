"""Tiny random vision-language models built locally for tests (no hub access).

``save_tiny_vlm(path, family)`` writes a random float32 model of one family (``VLM_FAMILIES``, keyed by the config
``model_type``) built from the family's own config classes, together with the family's own processor, into
``path``: plain ``transformers`` loads it with ``AutoModelForImageTextToText.from_pretrained`` and
``AutoProcessor.from_pretrained``. The language model has 2 layers of width 64, the vision tower 2 layers of width
32 on images of 28-64 px, so an image becomes at most 10 image tokens. Two processors force more: GOT-OCR2 writes
256 image tokens and Aria always resizes to 980 px (class constants a saved processor cannot change), so their
towers are shaped to match.

The tokenizer is ``tiny.make_tokenizer``'s byte-level BPE plus the family's image tokens, with a chat template (in
the tokenizer and in the processor) that takes ``content`` either as a string, written verbatim, or as a list of
``{"type": "text", "text": ...}`` / ``{"type": "image"}`` parts, an image part becoming the family's
``VlmFamily.placeholder``, which the processor expands. ``SKIPPED_FAMILIES`` says why the other common families
are not built here. Families whose processors transformers builds only with torchvision (Qwen2/2.5/3-VL, SmolVLM,
InternVL, LLaVA-OneVision, ...) are in ``VLM_FAMILIES`` only where torchvision is installed, and in
``SKIPPED_FAMILIES`` otherwise. ``tiny_image`` / ``square_image`` make small test images.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tiny import make_tokenizer

from swiftkit.core._compat import mend_llama4_outputs

# The width every tiny language model shares (head_dim 16 with 4 heads).
TEXT_HIDDEN = 64


@dataclass(frozen=True)
class VlmFamily:
    """How one family's tiny model is built.

    ``placeholder`` is what the chat template writes for an image part and the processor then expands;
    ``image_token`` is the token whose id the model config holds as ``image_token_id`` (the one the model fills with
    image features).
    """

    model_type: str
    placeholder: str
    image_token: str
    build: Callable  # (tokenizer) -> (config, processor)
    style: str = "chatml"  # the turn format of the chat template: "chatml", "gemma" or "llama3"
    extra_special_tokens: tuple[str, ...] = ()
    named_special_tokens: dict[str, str] = field(default_factory=dict)
    # False where the processor wants ``images=[image]`` for one prompt rather than ``images=[[image]]``.
    nested_images: bool = True
    # False where an image stays one token (Mllama reads the image through cross-attention).
    expands: bool = True
    # What the chat template writes for a video / audio part (families whose processor takes them).
    video_placeholder: str | None = None
    audio_placeholder: str | None = None


# ---------------------------------------------------------------------------------------------------------------------
# Chat templates: a string content goes through verbatim; a list of parts renders its image parts as the placeholder.

# Per style: (text before the turns, the Jinja expression of one turn, the generation prompt).
_TURNS = {
    "chatml": ("", "'<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n'", "<|im_start|>assistant\\n"),
    "gemma": (
        "{{- bos_token }}",
        "'<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' + content"
        " + '<end_of_turn>\\n'",
        "<start_of_turn>model\\n",
    ),
    "llama3": (
        "{{- bos_token }}",
        "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + content + '<|eot_id|>'",
        "<|start_header_id|>assistant<|end_header_id|>\\n\\n",
    ),
}


def _literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def chat_template(placeholder: str, style: str = "chatml", video_placeholder: str | None = None,
                  audio_placeholder: str | None = None) -> str:
    """A chat template in ``style`` whose image parts render as ``placeholder`` (and video / audio parts as
    ``video_placeholder`` / ``audio_placeholder``, when given)."""
    prefix, turn, generation = _TURNS[style]
    literal = _literal(placeholder)
    video = "".join(
        "{%- elif part['type'] == '" + kind + "' %}{%- set ns.text = ns.text + '" + _literal(text) + "' %}"
        for kind, text in (("video", video_placeholder), ("audio", audio_placeholder)) if text
    )
    return (
        prefix + "{%- for message in messages %}"
        "{%- if message['content'] is string %}{%- set content = message['content'] %}"
        "{%- else %}{%- set ns = namespace(text='') %}"
        "{%- for part in message['content'] %}"
        "{%- if part['type'] == 'image' %}{%- set ns.text = ns.text + '" + literal + "' %}" + video +
        "{%- elif part['type'] == 'text' %}{%- set ns.text = ns.text + part['text'] %}{%- endif %}"
        "{%- endfor %}{%- set content = ns.text %}{%- endif %}"
        "{{- " + turn + " }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '" + generation + "' }}{%- endif %}"
    )


# ---------------------------------------------------------------------------------------------------------------------
# Shared pieces of the configs and processors.


def _text(tok, model_type: str | None = None, **overrides) -> dict:
    """A 2-layer, hidden-64 decoder config (Llama-like keys) over the tokenizer's vocabulary, of ``model_type``."""
    cfg = dict(
        vocab_size=len(tok),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    if model_type is not None:
        cfg["model_type"] = model_type
    cfg.update(overrides)
    return cfg


def _vision(image_size=28, patch_size=14, **overrides) -> dict:
    """A 2-layer, hidden-32 ViT config (CLIP / SigLIP keys); an override of None drops that key."""
    cfg = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )
    cfg.update(overrides)
    return {key: value for key, value in cfg.items() if value is not None}


def _clip_vision() -> dict:
    """CLIP 28 px / patch 14: 4 patches + CLS."""
    return _vision(model_type="clip_vision_model")


def _siglip_vision(patch_size: int, **overrides) -> dict:
    """SigLIP on 28 px images."""
    return _vision(28, patch_size, model_type="siglip_vision_model", **overrides)


def _sam_vision(image_size: int, patch_size: int, window_size: int, global_attn_indexes: list, **overrides) -> dict:
    """A SAM-like windowed tower (no MLP width of the ViT keys) with a 16-channel neck."""
    return _vision(
        image_size,
        patch_size,
        intermediate_size=None,
        output_channels=16,
        window_size=window_size,
        global_attn_indexes=global_attn_indexes,
        mlp_dim=64,
        **overrides,
    )


def _qwen_vision(patch_size: int, **overrides) -> dict:
    """A Qwen2.5-VL-style tower (depth / num_heads keys) whose 2x2-merged patches project to the text width."""
    return dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=TEXT_HIDDEN,
        patch_size=patch_size,
        spatial_merge_size=2,
        **overrides,
    )


def _mrope(**extra) -> dict:
    # head_dim 16 -> 8 rotary frequencies, split over (time, height, width).
    return {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], **extra}


def _square(side: int) -> dict:
    return {"height": side, "width": side}


def _grid(side: int, patch_size: int, **extra) -> dict:
    """Qwen2-VL-style image processor sizes: every image resized to ``side`` x ``side`` px, patches merged 2x2."""
    return dict(
        size={"shortest_edge": side * side, "longest_edge": side * side}, patch_size=patch_size, merge_size=2, **extra
    )


def _config(model_type: str, **kwargs):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **kwargs)


def _backend(mapping: dict, model_type: str, **kwargs):
    """The class ``mapping`` (an auto mapping's names) gives ``model_type``, PIL backend first, built with ``kwargs``."""
    import transformers

    names = mapping[model_type]
    return getattr(transformers, names.get("pil") or names["torchvision"])(**kwargs)


def _image(model_type: str, **kwargs):
    """The image processor of ``model_type`` (PIL backend where it has one, else torchvision)."""
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    return _backend(IMAGE_PROCESSOR_MAPPING_NAMES, model_type, **kwargs)


def _video(model_type: str, **kwargs):
    """The video processor of ``model_type`` (torchvision only)."""
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING_NAMES

    return _backend(VIDEO_PROCESSOR_MAPPING_NAMES, model_type, **kwargs)


def _processor(class_name: str, tok, image_processor, **kwargs):
    import transformers

    return getattr(transformers, class_name)(image_processor=image_processor, tokenizer=tok, **kwargs)


def _video_ids(tok) -> dict:
    return dict(image_token_index=tok.image_token_id, video_token_index=tok.video_token_id)


# ---------------------------------------------------------------------------------------------------------------------
# The families.

# LLaVA's 28 px CLIP preprocessing, and its processor's count of the CLIP patches whose CLS the "default" strategy drops.
_CLIP_28 = dict(size={"shortest_edge": 28}, crop_size=_square(28))
_LLAVA_PROCESSOR = dict(patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1)
_DEFAULT_FEATURES = dict(vision_feature_select_strategy="default", vision_feature_layer=-1)


def _llava_config(tok, model_type: str, **kwargs):
    """A LLaVA-style config: the Llama text model over the CLIP tower, 4 image tokens per 28 px tile."""
    return _config(
        model_type, text_config=_text(tok, "llama"), vision_config=_clip_vision(), image_seq_length=4, **kwargs
    )


def _build_llava(tok, model_type: str = "llava"):
    # CLIP 28 px / patch 14: 4 patches + CLS; the "default" strategy drops the CLS -> 4 image tokens.
    features = dict(vision_feature_layers=[-2, -1]) if model_type == "vipllava" else _DEFAULT_FEATURES
    processor = _processor("LlavaProcessor", tok, _image(model_type, **_CLIP_28), **_LLAVA_PROCESSOR)
    return _llava_config(tok, model_type, image_token_id=tok.convert_tokens_to_ids("<image>"), **features), processor


def _build_llava_next(tok):
    # One 28 px grid tile plus the base image: 4 + 4 patches, 2 newline tokens -> 10 image tokens.
    grid = dict(image_grid_pinpoints=[[28, 28]])
    processor = _processor("LlavaNextProcessor", tok, _image("llava_next", **_CLIP_28, **grid), **_LLAVA_PROCESSOR)
    image_token_id = tok.convert_tokens_to_ids("<image>")
    return _llava_config(tok, "llava_next", image_token_id=image_token_id, **_DEFAULT_FEATURES, **grid), processor


def _build_idefics2(tok):
    # The perceiver resamples any image to 4 latents -> 4 <image> tokens between two <fake_token_around_image>.
    image_processor = _image("idefics2", size={"shortest_edge": 28, "longest_edge": 28}, do_image_splitting=False)
    processor = _processor("Idefics2Processor", tok, image_processor, image_seq_len=4)
    perceiver = dict(
        model_type="idefics2_perceiver",
        hidden_size=TEXT_HIDDEN,
        resampler_n_latents=4,
        resampler_depth=1,
        resampler_n_heads=2,
        resampler_head_dim=16,
        num_key_value_heads=1,
    )
    config = _config(
        "idefics2",
        text_config=_text(tok, "mistral"),
        vision_config=_vision(model_type="idefics2_vision"),
        perceiver_config=perceiver,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    return config, processor


_LONGEST_32 = dict(size={"longest_edge": 32}, max_image_size={"longest_edge": 32})


def _idefics3_config(tok, model_type: str, vision_type: str):
    # 32 px / patch 8 = 16 patches, pixel shuffle by 2 -> 4 <image> tokens.
    return _config(
        model_type,
        text_config=_text(tok, "llama"),
        vision_config=_vision(32, 8, model_type=vision_type),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )


def _build_idefics3(tok):
    # No splitting into tiles: one 32 px image -> 4 <image> tokens.
    image_processor = _image("idefics3", **_LONGEST_32, do_image_splitting=False)
    processor = _processor("Idefics3Processor", tok, image_processor, image_seq_len=4)
    return _idefics3_config(tok, "idefics3", "idefics3_vision"), processor


def _gemma3_parts(tok, model_type: str):
    """Gemma3's processor, text config and image path: SigLIP 28 px / patch 7 = 4x4 patches, average-pooled to 2x2
    -> 4 <image_soft_token> between boi and eoi."""
    processor = _processor("Gemma3Processor", tok, _image(model_type, size=_square(28)), image_seq_length=4)
    text = _text(tok, sliding_window=64, query_pre_attn_scalar=16)
    image_path = dict(
        vision_config=_siglip_vision(7),
        mm_tokens_per_image=4,
        boi_token_index=tok.boi_token_id,
        eoi_token_index=tok.eoi_token_id,
        image_token_index=tok.image_token_id,
        tie_word_embeddings=False,
    )
    return processor, text, image_path


def _build_gemma3(tok):
    processor, text, image_path = _gemma3_parts(tok, "gemma3")
    return _config("gemma3", text_config=dict(text, model_type="gemma3_text"), **image_path), processor


def _build_t5gemma2(tok):
    # Gemma3's image path in the encoder of an encoder-decoder.
    processor, text, image_path = _gemma3_parts(tok, "t5gemma2")
    config = _config(
        "t5gemma2",
        encoder=dict(text_config=text, **image_path),
        decoder=text,
        image_token_index=tok.image_token_id,
        tie_word_embeddings=False,
    )
    return config, processor


def _build_mllama(tok):
    # One 28 px tile / patch 14 = 4 patches + CLS, read by the cross-attention layer (the 2nd of the 2 layers);
    # <|image|> stays one token.
    processor = _processor("MllamaProcessor", tok, _image("mllama", size=_square(28), max_image_tiles=1))
    vision = _vision(
        model_type="mllama_vision_model",
        num_attention_heads=None,  # mllama names it attention_heads
        attention_heads=2,
        num_global_layers=1,
        max_num_tiles=1,
        supported_aspect_ratios=[[1, 1]],
        intermediate_layers_indices=[0],
        vision_output_dim=64,
    )
    config = _config(
        "mllama",
        text_config=_text(tok, "mllama_text_model", cross_attention_layers=[1]),
        vision_config=vision,
        image_token_id=tok.image_token_id,
    )
    return config, processor


def _build_paligemma(tok):
    # SigLIP 28 px / patch 14 -> 4 <image> tokens; the processor puts them (and BOS) before the prompt.
    processor = _processor("PaliGemmaProcessor", tok, _image("paligemma", size=_square(28), image_seq_length=4))
    config = _config(
        "paligemma",
        text_config=_text(processor.tokenizer, "gemma"),
        vision_config=_siglip_vision(14, projection_dim=TEXT_HIDDEN),
        image_token_id=tok.image_token_id,
        projection_dim=TEXT_HIDDEN,
        hidden_size=TEXT_HIDDEN,
        vocab_size=len(processor.tokenizer),
        tie_word_embeddings=False,
    )
    return config, processor


def _cohere_siglip_config(tok, model_type: str, **kwargs):
    # SigLIP 28 px / patch 7 = 4x4 patches, pixel-shuffled by 2 -> 4 image tokens, into a Cohere2 text model.
    return _config(
        model_type,
        text_config=_text(tok, "cohere2"),
        vision_config=_siglip_vision(7),
        downsample_factor=2,
        tie_word_embeddings=False,
        **kwargs,
    )


def _build_aya_vision(tok):
    # 4 <|IMG_PATCH|> tokens, one global tile.
    image_processor = _image("aya_vision", size=_square(28), crop_to_patches=False)
    processor = _processor("AyaVisionProcessor", tok, image_processor, patch_size=7, img_size=28, downsample_factor=2)
    image_token_id = tok.convert_tokens_to_ids("<|IMG_PATCH|>")
    return _cohere_siglip_config(tok, "aya_vision", image_token_id=image_token_id), processor


def _build_got_ocr2(tok):
    # The processor always writes 256 <imgpad> (a class constant it does not save), so the SAM-like tower sees
    # 64 px / patch 1 = 64x64 patches in 8x8 windows, and the two stride-2 convolutions leave 16x16 = 256 features.
    processor = _processor("GotOcr2Processor", tok, _image("got_ocr2", size=_square(64)))
    config = _config(
        "got_ocr2",
        text_config=_text(tok, "qwen2"),
        vision_config=_sam_vision(64, 1, 8, []),
        image_token_id=tok.convert_tokens_to_ids("<imgpad>"),
        image_seq_length=256,
        tie_word_embeddings=False,
    )
    return config, processor


# The DeepSeek-VL image processors' sizes: 28 px images, none under 14 px.
_DEEPSEEK_28 = dict(size=_square(28), min_size=14)


def _deepseek_config(tok, model_type: str, vision_config: dict, **kwargs):
    return _config(
        model_type,
        text_config=_text(tok, "llama"),
        vision_config=vision_config,
        image_token_id=tok.image_token_id,
        tie_word_embeddings=False,
        **kwargs,
    )


def _build_janus(tok):
    # SigLIP-like 28 px / patch 14 -> 4 <image_placeholder> between <begin_of_image> and <end_of_image>; the VQ
    # model (for image generation) is a 2-level, 32-channel toy with a 16-code book.
    processor = _processor("JanusProcessor", tok, _image("janus", **_DEEPSEEK_28), num_image_tokens=4)
    vision = _vision(intermediate_size=None, mlp_ratio=2.0, projection_dim=TEXT_HIDDEN, depth=2, num_image_tokens=4)
    vq = dict(
        embed_dim=8,
        num_embeddings=16,
        latent_channels=8,
        base_channels=32,
        channel_multiplier=[1, 1],
        num_res_blocks=1,
        num_patches=2,
        projection_dim=TEXT_HIDDEN,
        image_token_embed_dim=TEXT_HIDDEN,
    )
    return _deepseek_config(tok, "janus", vision, vq_config=vq), processor


def _build_deepseek_vl(tok):
    # SigLIP 28 px / patch 14 -> 4 <image_placeholder> tokens.
    processor = _processor("DeepseekVLProcessor", tok, _image("deepseek_vl", **_DEEPSEEK_28), num_image_tokens=4)
    return _deepseek_config(tok, "deepseek_vl", _siglip_vision(14)), processor


def _build_deepseek_vl_hybrid(tok):
    # SigLIP 28 px / patch 14 -> 4 tokens, fused with a SAM tower on the same image at 32 px / patch 4.
    image_processor = _image("deepseek_vl_hybrid", **_DEEPSEEK_28, high_res_size=_square(32))
    processor = _processor("DeepseekVLHybridProcessor", tok, image_processor, num_image_tokens=4)
    high_res = _sam_vision(32, 4, 4, [1], model_type="sam_vision_model")
    return _deepseek_config(tok, "deepseek_vl_hybrid", _siglip_vision(14), high_res_vision_config=high_res), processor


_OVIS2_INDICATORS = ("<IMG_START>", "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>")


def _build_ovis2(tok):
    # AIMv2-like 28 px / patch 14 -> 4 visual-vocabulary tokens <IMG_ATOM> between indicator tokens.
    image_processor = _image("ovis2", size=_square(28), crop_to_patches=False)
    processor = _processor("Ovis2Processor", tok, image_processor, image_seq_length=4)
    config = _config(
        "ovis2",
        text_config=_text(tok, "qwen2"),
        vision_config=_vision(vocab_size=32, hidden_stride=1),
        image_token_id=tok.convert_tokens_to_ids("<IMG_ATOM>"),
        visual_indicator_token_ids=tok.convert_tokens_to_ids(list(_OVIS2_INDICATORS)),
        vocab_size=len(tok),
        hidden_size=TEXT_HIDDEN,
        tie_word_embeddings=False,
    )
    return config, processor


def _build_aria(tok):
    # AriaProcessor always resizes to 980 px (a class default that overrides the saved image processor), so the
    # Idefics3-like tower uses 70 px patches: 14x14 = 196 patches, read by 4 projector queries -> 4 <|img|> tokens.
    image_processor = _image("aria", max_image_size=980, min_image_size=28)
    processor = _processor("AriaProcessor", tok, image_processor, size_conversion={980: 4})
    text = _text(tok, "aria_text", moe_num_experts=2, moe_topk=1, moe_num_shared_experts=1, moe_intermediate_size=64)
    config = _config(
        "aria",
        text_config=text,
        vision_config=_vision(980, 70, model_type="idefics3_vision"),
        projector_patch_to_query_dict={196: 4},
        image_token_id=tok.image_token_id,
    )
    return config, processor


def _build_paddleocr_vl(tok):
    # 56 px / patch 14 = 4x4 patches, merged 2x2 -> 4 <|IMAGE_PLACEHOLDER|> tokens (3D rope over the grid).
    processor = _processor("PaddleOCRVLProcessor", tok, _image("paddleocr_vl", **_grid(56, 14)))
    config = _config(
        "paddleocr_vl",
        text_config=_text(tok, rope_parameters=_mrope()),
        vision_config=_vision(56, 14, spatial_merge_size=2),
        image_token_id=tok.image_token_id,
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|IMAGE_START|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|IMAGE_END|>"),
        tie_word_embeddings=False,
    )
    return config, processor


def _internvl_config(tok, text_model_type: str, **vision_overrides) -> dict:
    # InternViT 56 px / patch 14 = 4x4 patches, pixel-shuffled by 0.5 -> 4 <IMG_CONTEXT> inside <img></img>.
    return dict(
        text_config=_text(tok, text_model_type),
        vision_config=_vision([56, 56], [14, 14], **vision_overrides),
        image_token_id=tok.context_image_token_id,
        image_seq_length=4,
        downsample_ratio=0.5,
    )


def _build_qianfan_ocr(tok):
    # InternViT-like, one 56 px tile.
    image_processor = _image("qianfan_ocr", size=_square(56), crop_to_patches=False)
    processor = _processor("QianfanOCRProcessor", tok, image_processor, image_seq_length=4)
    return _config("qianfan_ocr", **_internvl_config(tok, "qwen3", drop_path_rate=0.0)), processor


def _pixtral(tok, model_type: str, class_name: str, text_model_type: str, **kwargs):
    """(config, processor) of a Pixtral tower: 32 px / patch 8 = 4x4 patches, spatially merged 2x2 -> 2 rows of 2
    image tokens."""
    image_processor = _image(model_type, size={"longest_edge": 32}, patch_size=_square(16))
    processor = _processor(class_name, tok, image_processor, patch_size=8, spatial_merge_size=2)
    config = _config(
        model_type,
        text_config=_text(tok, text_model_type),
        vision_config=_vision(32, 8, model_type="pixtral", head_dim=16),
        spatial_merge_size=2,
        tie_word_embeddings=False,
        **kwargs,
    )
    return config, processor


def _build_lighton_ocr(tok):
    # Pixtral -> 4 <|image_pad|> tokens.
    return _pixtral(tok, "lighton_ocr", "LightOnOcrProcessor", "qwen3", image_token_id=tok.image_token_id)


def _build_hunyuan_vl(tok):
    # 64 px / patch 16 = 4x4 patches, merged 2x2 -> 2 rows of 2 tokens, a row break after each, 2 wrappers = 8.
    processor = _processor("HunYuanVLProcessor", tok, _image("hunyuan_vl", **_grid(64, 16)))
    vision = _vision(
        None,
        16,
        out_hidden_size=TEXT_HIDDEN,
        text_hidden_size=TEXT_HIDDEN,
        spatial_merge_size=2,
        max_image_size=64,
        min_image_size=32,
    )
    config = _config(
        "hunyuan_vl",
        text_config=_text(tok, rope_parameters=_mrope(mrope_section=[2, 2, 2, 2])),
        vision_config=vision,
        image_token_id=tok.image_token_id,
        im_start_id=tok.image_start_token_id,
        im_end_id=tok.image_end_token_id,
        tie_word_embeddings=False,
    )
    return config, processor


def _build_granite_docling(tok):
    # One 32 px tile / patch 8 = 16 patches, pixel-shuffled by 2 -> 4 <image> tokens (coarse path only).
    image_processor = _image("granite_docling", size=_square(32), crop_to_patches=False)
    processor = _processor("GraniteDoclingProcessor", tok, image_processor, image_seq_len=4)
    vision = _vision(
        32, 8, out_hidden_size=TEXT_HIDDEN, scale_factor=2, deepstack_visual_indexes=[0], use_fine_route=False
    )
    config = _config(
        "granite_docling",
        text_config=_text(tok),
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    return config, processor


# ---------------------------------------------------------------------------------------------------------------------
# Families whose processors transformers builds only with torchvision (a video processor, or an image processor with
# a torchvision backend only). ``VLM_FAMILIES`` holds them only where torchvision is installed.

_QWEN_TOKENS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}


def _qwen_vl(tok, model_type: str, class_name: str, text_config: dict, vision_config: dict, processor_type=None):
    """(config, processor) of a Qwen-VL family: every image and video frame is resized to 2 x 2 merged patches (2
    frames of a still image) -> 4 <|image_pad|> tokens per image."""
    patch_size = vision_config["patch_size"]
    sizes = _grid(2 * patch_size * 2, patch_size, temporal_patch_size=2)
    processor_type = processor_type or model_type
    video_processor = _video(processor_type, **sizes)
    processor = _processor(class_name, tok, _image(processor_type, **sizes), video_processor=video_processor)
    config = _config(
        model_type,
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=tok.image_token_id,
        video_token_id=tok.video_token_id,
        vision_start_token_id=tok.vision_start_token_id,
        vision_end_token_id=tok.vision_end_token_id,
        tie_word_embeddings=False,
    )
    return config, processor


def _build_qwen2_vl(tok):
    # 56 px / patch 14 = 4x4 patches, merged 2x2 -> 4 <|image_pad|> tokens.
    vision = dict(
        depth=2, embed_dim=32, hidden_size=TEXT_HIDDEN, mlp_ratio=2, num_heads=2, patch_size=14, spatial_merge_size=2
    )
    return _qwen_vl(tok, "qwen2_vl", "Qwen2VLProcessor", _text(tok, rope_parameters=_mrope()), vision)


def _build_qwen2_5_vl(tok):
    # As Qwen2-VL (4 <|image_pad|> tokens), with a windowed tower whose 2nd layer attends fully.
    vision = _qwen_vision(14, window_size=56, fullatt_block_indexes=[1])
    return _qwen_vl(tok, "qwen2_5_vl", "Qwen2_5_VLProcessor", _text(tok, rope_parameters=_mrope()), vision)


def _qwen3_vision() -> dict:
    # 64 px / patch 16 = 4x4 patches, merged 2x2 -> 4 <|image_pad|> tokens; a 4x4 table of position embeddings and
    # the deepstack features of the 1st layer.
    return _qwen_vision(16, num_position_embeddings=16, deepstack_visual_indexes=[0])


def _build_qwen3_vl(tok):
    text = _text(tok, rope_parameters=_mrope(mrope_interleaved=True))
    return _qwen_vl(tok, "qwen3_vl", "Qwen3VLProcessor", text, _qwen3_vision())


def _build_qwen3_vl_moe(tok):
    # Qwen3-VL with 2 routed experts (1 per token) in both decoder layers.
    text = _text(
        tok,
        rope_parameters=_mrope(mrope_interleaved=True),
        num_experts=2,
        num_experts_per_tok=1,
        moe_intermediate_size=64,
        tie_word_embeddings=False,
    )
    return _qwen_vl(tok, "qwen3_vl_moe", "Qwen3VLProcessor", text, _qwen3_vision(), processor_type="qwen3_vl")


def _build_smolvlm(tok):
    # As Idefics3 (4 <image> tokens, no splitting into tiles); video frames the same size.
    image_processor = _image("smolvlm", **_LONGEST_32, do_image_splitting=False)
    video_processor = _video("smolvlm", **_LONGEST_32)
    processor = _processor("SmolVLMProcessor", tok, image_processor, video_processor=video_processor, image_seq_len=4)
    return _idefics3_config(tok, "smolvlm", "smolvlm_vision"), processor


def _build_internvl(tok):
    # InternViT, one tile (the processor asks for crops, which max_patches=1 makes a single one).
    image_processor = _image("internvl", size=_square(56), crop_to_patches=False, max_patches=1)
    video_processor = _video("internvl", size=_square(56))
    processor = _processor(
        "InternVLProcessor", tok, image_processor, video_processor=video_processor, image_seq_length=4
    )
    return _config("internvl", **_internvl_config(tok, "qwen2"), tie_word_embeddings=False), processor


def _build_llava_onevision(tok):
    # SigLIP 28 px / patch 14 -> 2x2 features: the base image plus one 28 px grid tile, a newline after each row of
    # the tile and one after the image -> 4 + 4 + 2 + 1 image tokens at most.
    grid = dict(image_grid_pinpoints=[[28, 28]])
    image_processor = _image("llava_onevision", size=_square(28), **grid)
    video_processor = _video("llava_onevision", size=_square(28))
    features = dict(vision_feature_select_strategy="full")
    processor = _processor(
        "LlavaOnevisionProcessor", tok, image_processor, video_processor=video_processor, num_image_tokens=4, **features
    )
    config = _config(
        "llava_onevision",
        text_config=_text(tok, "qwen2"),
        vision_config=_siglip_vision(14),
        **_video_ids(tok),
        **features,
        vision_feature_layer=-1,
        **grid,
        tie_word_embeddings=False,
    )
    return config, processor


def _build_mistral3(tok):
    # Pixtral -> 2 rows of 2 [IMG], [IMG_BREAK] / [IMG_END] after each row.
    image_token_index = tok.convert_tokens_to_ids("[IMG]")
    return _pixtral(tok, "mistral3", "PixtralProcessor", "mistral", image_token_index=image_token_index)


_GLM4V_TOKENS = ("<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>")


def _build_glm4v(tok, model_type: str = "glm4v", text_config: dict | None = None):
    # 56 px / patch 14 = 4x4 patches (2 frames of a still image), merged 2x2 -> 4 <|image|> tokens.
    sizes = _grid(56, 14, temporal_patch_size=2)
    video_processor = _video("glm4v", **sizes, max_image_size={"longest_edge": 56 * 56 * 2})
    processor = _processor("Glm4vProcessor", tok, _image("glm4v", **sizes), video_processor=video_processor)
    config = _config(
        model_type,
        text_config=text_config or _text(tok, rope_parameters=_mrope()),
        vision_config=_qwen_vision(14, image_size=56),
        image_token_id=tok.image_token_id,
        video_token_id=tok.video_token_id,
        image_start_token_id=tok.convert_tokens_to_ids("<|begin_of_image|>"),
        image_end_token_id=tok.convert_tokens_to_ids("<|end_of_image|>"),
        video_start_token_id=tok.convert_tokens_to_ids("<|begin_of_video|>"),
        video_end_token_id=tok.convert_tokens_to_ids("<|end_of_video|>"),
        tie_word_embeddings=False,
    )
    return config, processor


def _build_glm4v_moe(tok):
    # GLM-4.5V: GLM-4.1V's processor and tower over a MoE text model (a dense first layer, then 2 routed experts
    # and a shared one); its rotary covers half of each head: 4 frequencies of head_dim 16, split (1, 1, 2).
    text = _text(
        tok,
        rope_parameters=_mrope(mrope_section=[1, 1, 2], partial_rotary_factor=0.5),
        n_routed_experts=2,
        num_experts_per_tok=1,
        n_shared_experts=1,
        moe_intermediate_size=32,
        first_k_dense_replace=1,
        n_group=1,
        topk_group=1,
    )
    return _build_glm4v(tok, "glm4v_moe", text)


def _build_perception_lm(tok):
    # A timm Perception Encoder of 2 blocks of width 32 on one 28 px tile (no thumbnail) / patch 14 = 2x2 patches
    # (+ CLS, dropped) -> 4 <|image|> tokens; the Llama text model.
    image_processor = _image("perception_lm", tile_size=28, max_num_tiles=1, vision_input_type="vanilla")
    video_processor = _video("perception_lm", size=_square(28))
    processor = _processor(
        "PerceptionLMProcessor", tok, image_processor, video_processor=video_processor, patch_size=14, pooling_ratio=1
    )
    vision = {
        "model_type": "timm_wrapper",
        "architecture": "vit_pe_core_large_patch14_336",
        "model_args": {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 28, "ref_feat_shape": (2, 2),
                       "attn_pool_num_heads": 2, "global_pool": ""},
        "do_pooling": False,
    }
    config = _config(
        "perception_lm",
        text_config=_text(tok, "llama"),
        vision_config=vision,
        image_token_id=tok.image_token_id,
        video_token_id=tok.video_token_id,
        tie_word_embeddings=False,
    )
    return config, processor


_GEMMA3N_TOKENS = {
    "image_token": "<image_soft_token>",
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "audio_token": "<audio_soft_token>",
    "boa_token": "<start_of_audio>",
    "eoa_token": "<end_of_audio>",
}


def _build_gemma3n(tok):
    # A timm MobileNetV5 at 1/200 of its channels (0.9M weights; its multi-scale fusion always gives 2048 features
    # on a 16x16 grid) -> 256 <image_soft_token> between boi and eoi on a 64 px image; a one-layer conformer as
    # the audio tower the model also builds; the Gemma 3n text stack (AltUp, Laurel, per-layer inputs).
    import transformers

    processor = transformers.Gemma3nProcessor(
        feature_extractor=transformers.Gemma3nAudioFeatureExtractor(),
        image_processor=_image("gemma3n", size=_square(64)),
        tokenizer=tok,
        image_seq_length=256,
        audio_seq_length=64,
    )
    text = _text(
        tok,
        "gemma3n_text",
        vocab_size=len(tok) + 32,  # the text tokens, then the vision tower's 16 and the audio tower's 16
        intermediate_size=[128, 128],
        activation_sparsity_pattern=[0.0, 0.0],
        num_kv_shared_layers=0,
        laurel_rank=8,
        hidden_size_per_layer_input=16,
        vocab_size_per_layer_input=len(tok),
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=64,
    )
    vision = {"model_type": "gemma3n_vision", "architecture": "mobilenetv5_300m_enc", "hidden_size": 2048,
              "model_args": {"channel_multiplier": 0.005}, "vocab_size": 16, "vocab_offset": len(tok)}
    audio = {"model_type": "gemma3n_audio", "hidden_size": 32, "conf_num_hidden_layers": 1,
             "conf_num_attention_heads": 2, "sscp_conv_channel_size": [8, 8], "vocab_size": 16,
             "vocab_offset": len(tok) + 16}
    config = _config(
        "gemma3n",
        text_config=text,
        vision_config=vision,
        audio_config=audio,
        vision_soft_tokens_per_image=256,
        audio_soft_tokens_per_image=64,
        tie_word_embeddings=False,
        **{f"{name.removesuffix('_token')}_token_id": tok.convert_tokens_to_ids(token)
           for name, token in _GEMMA3N_TOKENS.items()},
    )
    return config, processor


_LLAMA4_TOKENS = ("<|image_start|>", "<|image_end|>", "<|patch|>", "<|tile_x_separator|>", "<|tile_y_separator|>")


def _build_llama4(tok):
    # One 56 px tile / patch 14 = 4x4 patches (+ CLS, dropped), pixel-shuffled by 0.5 -> 4 <|patch|> tokens after
    # <|image|>, between <|image_start|> and <|image_end|>; a 2-expert MoE text model with chunked attention.
    # The processor normalises in bfloat16 (pixel values a float32 tower rejects); without the normalisation the
    # pixels stay float32, in [0, 1] rather than [-1, 1].
    image_processor = _image("llama4", size=_square(56), max_patches=1, do_normalize=False)
    processor = _processor("Llama4Processor", tok, image_processor, patch_size=14)
    text = _text(
        tok,
        intermediate_size=64,
        intermediate_size_mlp=128,
        num_local_experts=2,
        num_experts_per_tok=1,
        attention_chunk_size=1024,
    )
    vision = _vision(
        56,
        14,
        intermediate_size=128,  # the pixel-shuffled width: 32 / 0.5**2
        vision_output_dim=TEXT_HIDDEN,
        projector_input_dim=TEXT_HIDDEN,
        projector_output_dim=TEXT_HIDDEN,
    )
    config = _config(
        "llama4",
        text_config=text,
        vision_config=vision,
        boi_token_index=tok.convert_tokens_to_ids("<|image_start|>"),
        eoi_token_index=tok.convert_tokens_to_ids("<|image_end|>"),
        image_token_index=tok.convert_tokens_to_ids("<|patch|>"),
        tie_word_embeddings=False,
    )
    return config, processor


def _build_lfm2_vl(tok):
    # SigLIP2 (NaFlex) on a 32 px image / patch 8 = 4x4 patches, pixel-unshuffled by 2 -> 4 <image> tokens between
    # <|image_start|> and <|image_end|>, no tiles.
    image_processor = _image(
        "lfm2_vl",
        do_image_splitting=False,
        encoder_patch_size=8,
        tile_size=32,
        size=_square(32),
        min_image_tokens=4,
        max_image_tokens=4,
        downsample_factor=2,
    )
    processor = _processor("Lfm2VlProcessor", tok, image_processor)
    config = _config(
        "lfm2_vl",
        text_config=_text(tok, "lfm2", layer_types=["conv", "full_attention"], block_auto_adjust_ff_dim=False),
        vision_config=_vision(32, 8, model_type="siglip2_vision_model", num_patches=16),
        image_token_id=tok.image_token_id,
        projector_hidden_size=TEXT_HIDDEN,
        downsample_factor=2,
        tie_word_embeddings=False,
    )
    return config, processor


def _build_cohere2_vision(tok):
    # One 28 px tile -> 2x2 = 4 <|IMG_PATCH|> (the image processor's patch_size counts tokens per tile side) and a
    # line break, between <|START_OF_IMG|> and <|END_OF_IMG|>.
    image_processor = _image("cohere2_vision", size=_square(28), crop_to_patches=False, patch_size=2)
    processor = _processor("Cohere2VisionProcessor", tok, image_processor)
    config = _cohere_siglip_config(
        tok, "cohere2_vision", image_token_id=tok.image_token_id, alignment_intermediate_size=TEXT_HIDDEN
    )
    return config, processor


def _build_llava_next_video(tok):
    # LLaVA-NeXT's image path (one 28 px tile plus the base image -> 10 <image> tokens), with 28 px video frames.
    grid = dict(image_grid_pinpoints=[[28, 28]])
    image_processor = _image("llava_next_video", **_CLIP_28, **grid)
    video_processor = _video("llava_next_video", **_CLIP_28)
    processor = _processor(
        "LlavaNextVideoProcessor", tok, image_processor, video_processor=video_processor, **_LLAVA_PROCESSOR
    )
    config = _llava_config(tok, "llava_next_video", **_video_ids(tok), **_DEFAULT_FEATURES, **grid, video_seq_length=2)
    return config, processor


def _build_video_llava(tok):
    # CLIP 28 px / patch 14: 4 patches + CLS; the "default" strategy drops the CLS -> 4 <image> tokens.
    image_processor = _image("video_llava", **_CLIP_28)
    video_processor = _video("video_llava", **_CLIP_28)
    processor = _processor(
        "VideoLlavaProcessor", tok, image_processor, video_processor=video_processor, **_LLAVA_PROCESSOR
    )
    config = _llava_config(tok, "video_llava", **_video_ids(tok), **_DEFAULT_FEATURES, video_seq_length=40)
    return config, processor


_QWEN_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
_VIDEO_LLAVA = {"image_token": "<image>", "video_token": "<video>"}


def _torchvision_families() -> list[VlmFamily]:
    qwen = dict(named_special_tokens=_QWEN_TOKENS, video_placeholder="<|vision_start|><|video_pad|><|vision_end|>")
    return [
        VlmFamily("qwen2_vl", _QWEN_PLACEHOLDER, "<|image_pad|>", _build_qwen2_vl, **qwen),
        VlmFamily("qwen2_5_vl", _QWEN_PLACEHOLDER, "<|image_pad|>", _build_qwen2_5_vl, **qwen),
        VlmFamily("qwen3_vl", _QWEN_PLACEHOLDER, "<|image_pad|>", _build_qwen3_vl, **qwen),
        VlmFamily("qwen3_vl_moe", _QWEN_PLACEHOLDER, "<|image_pad|>", _build_qwen3_vl_moe, **qwen),
        VlmFamily(
            "smolvlm",
            "<image>",
            "<image>",
            _build_smolvlm,
            extra_special_tokens=(*_idefics_tokens(), "<video>"),
            video_placeholder="<video>",
        ),
        VlmFamily(
            "internvl",
            "<IMG_CONTEXT>",
            "<IMG_CONTEXT>",
            _build_internvl,
            video_placeholder="<video>",
            named_special_tokens={
                "start_image_token": "<img>",
                "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>",
            },
        ),
        VlmFamily(
            "llava_onevision",
            "<image>",
            "<image>",
            _build_llava_onevision,
            named_special_tokens={"image_token": "<image>", "video_token": "<video>"},
            video_placeholder="<video>",
        ),
        VlmFamily(
            "mistral3",
            "[IMG]",
            "[IMG]",
            _build_mistral3,
            extra_special_tokens=("[IMG]", "[IMG_BREAK]", "[IMG_END]"),
        ),
        VlmFamily(
            "glm4v",
            "<|begin_of_image|><|image|><|end_of_image|>",
            "<|image|>",
            _build_glm4v,
            extra_special_tokens=_GLM4V_TOKENS,
            video_placeholder="<|begin_of_video|><|video|><|end_of_video|>",
            named_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
        ),
        VlmFamily(
            "glm4v_moe",
            "<|begin_of_image|><|image|><|end_of_image|>",
            "<|image|>",
            _build_glm4v_moe,
            extra_special_tokens=_GLM4V_TOKENS,
            video_placeholder="<|begin_of_video|><|video|><|end_of_video|>",
            named_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
        ),
        VlmFamily(
            "llama4",
            "<|image|>",
            "<|patch|>",
            _build_llama4,
            style="llama3",
            extra_special_tokens=("<|image|>", *_LLAMA4_TOKENS),
            nested_images=False,
        ),
        VlmFamily(
            "gemma3n",
            "<image_soft_token>",
            "<image_soft_token>",
            _build_gemma3n,
            style="gemma",
            audio_placeholder="<audio_soft_token>",
            named_special_tokens=_GEMMA3N_TOKENS,
            nested_images=False,
        ),
        VlmFamily(
            "perception_lm",
            "<|image|>",
            "<|image|>",
            _build_perception_lm,
            style="llama3",
            video_placeholder="<|video|>",
            named_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
            nested_images=False,
        ),
        VlmFamily(
            "lfm2_vl",
            "<image>",
            "<image>",
            _build_lfm2_vl,
            named_special_tokens={
                "image_token": "<image>",
                "image_start_token": "<|image_start|>",
                "image_end_token": "<|image_end|>",
                "image_thumbnail_token": "<|img_thumbnail|>",
            },
        ),
        VlmFamily(
            "cohere2_vision",
            "<|IMG_PATCH|>",
            "<|IMG_PATCH|>",
            _build_cohere2_vision,
            named_special_tokens={
                "image_token": "<|IMG_PATCH|>",
                "boi_token": "<|START_OF_IMG|>",
                "eoi_token": "<|END_OF_IMG|>",
                "img_line_break_token": "<|IMG_LINE_BREAK|>",
            },
        ),
        VlmFamily(
            "llava_next_video",
            "<image>",
            "<image>",
            _build_llava_next_video,
            named_special_tokens=_VIDEO_LLAVA,
            video_placeholder="<video>",
        ),
        VlmFamily(
            "video_llava",
            "<image>",
            "<image>",
            _build_video_llava,
            named_special_tokens=_VIDEO_LLAVA,
            video_placeholder="<video>",
        ),
    ]


_GEMMA3_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}


def _idefics_tokens() -> tuple[str, ...]:
    rows = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    return ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *rows)


VLM_FAMILIES: dict[str, VlmFamily] = {
    family.model_type: family
    for family in [
        VlmFamily("llava", "<image>", "<image>", _build_llava, extra_special_tokens=("<image>",)),
        VlmFamily(
            "vipllava",
            "<image>",
            "<image>",
            lambda tok: _build_llava(tok, "vipllava"),
            extra_special_tokens=("<image>",),
        ),
        VlmFamily("llava_next", "<image>", "<image>", _build_llava_next, extra_special_tokens=("<image>",)),
        VlmFamily(
            "idefics2",
            "<image>",
            "<image>",
            _build_idefics2,
            extra_special_tokens=("<fake_token_around_image>", "<image>", "<end_of_utterance>"),
        ),
        VlmFamily("idefics3", "<image>", "<image>", _build_idefics3, extra_special_tokens=_idefics_tokens()),
        VlmFamily(
            "gemma3",
            "<start_of_image>",
            "<image_soft_token>",
            _build_gemma3,
            style="gemma",
            named_special_tokens=_GEMMA3_TOKENS,
        ),
        VlmFamily(
            "mllama",
            "<|image|>",
            "<|image|>",
            _build_mllama,
            style="llama3",
            extra_special_tokens=("<|python_tag|>",),
            named_special_tokens={"image_token": "<|image|>"},
            expands=False,
        ),
        VlmFamily(
            "paligemma",
            "<image>",
            "<image>",
            _build_paligemma,
            style="gemma",
            named_special_tokens={"image_token": "<image>"},
        ),
        VlmFamily(
            "aya_vision",
            "<image>",
            "<|IMG_PATCH|>",
            _build_aya_vision,
            extra_special_tokens=(
                "<image>",
                "<|START_OF_IMG|>",
                "<|END_OF_IMG|>",
                "<|IMG_PATCH|>",
                "<|IMG_LINE_BREAK|>",
                "TILE",
                "TILE_GLOBAL",
            ),
        ),
        VlmFamily(
            "got_ocr2",
            "<img><imgpad></img>",
            "<imgpad>",
            _build_got_ocr2,
            extra_special_tokens=("<img>", "</img>", "<imgpad>"),
            nested_images=False,
        ),
        VlmFamily(
            "janus",
            "<image_placeholder>",
            "<image_placeholder>",
            _build_janus,
            named_special_tokens={
                "image_token": "<image_placeholder>",
                "boi_token": "<begin_of_image>",
                "eoi_token": "<end_of_image>",
            },
        ),
        VlmFamily(
            "deepseek_vl",
            "<image_placeholder>",
            "<image_placeholder>",
            _build_deepseek_vl,
            named_special_tokens={"image_token": "<image_placeholder>"},
        ),
        VlmFamily(
            "deepseek_vl_hybrid",
            "<image_placeholder>",
            "<image_placeholder>",
            _build_deepseek_vl_hybrid,
            named_special_tokens={"image_token": "<image_placeholder>"},
        ),
        VlmFamily(
            "ovis2",
            "<image>",
            "<IMG_ATOM>",
            _build_ovis2,
            extra_special_tokens=("<image>", "<IMG_ATOM>", *_OVIS2_INDICATORS),
        ),
        VlmFamily("aria", "<|img|>", "<|img|>", _build_aria, named_special_tokens={"image_token": "<|img|>"}),
        VlmFamily(
            "paddleocr_vl",
            "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>",
            "<|IMAGE_PLACEHOLDER|>",
            _build_paddleocr_vl,
            extra_special_tokens=("<|IMAGE_START|>", "<|IMAGE_END|>", "<|video_pad|>"),
            named_special_tokens={"image_token": "<|IMAGE_PLACEHOLDER|>"},
        ),
        VlmFamily(
            "qianfan_ocr",
            "<image>",
            "<IMG_CONTEXT>",
            _build_qianfan_ocr,
            extra_special_tokens=("<image>",),
            named_special_tokens={
                "start_image_token": "<img>",
                "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>",
            },
        ),
        VlmFamily(
            "lighton_ocr",
            "<|image_pad|>",
            "<|image_pad|>",
            _build_lighton_ocr,
            named_special_tokens={
                "image_token": "<|image_pad|>",
                "image_break_token": "<|vision_pad|>",
                "image_end_token": "<|vision_end|>",
            },
        ),
        VlmFamily(
            "hunyuan_vl",
            "<hy_place▁holder▁no▁100><hy_place▁holder▁no▁102><hy_place▁holder▁no▁101>",
            "<hy_place▁holder▁no▁102>",
            _build_hunyuan_vl,
            named_special_tokens={
                "image_start_token": "<hy_place▁holder▁no▁100>",
                "image_token": "<hy_place▁holder▁no▁102>",
                "image_end_token": "<hy_place▁holder▁no▁101>",
            },
        ),
        VlmFamily(
            "granite_docling", "<image>", "<image>", _build_granite_docling, extra_special_tokens=_idefics_tokens()
        ),
        VlmFamily(
            "t5gemma2",
            "<start_of_image>",
            "<image_soft_token>",
            _build_t5gemma2,
            style="gemma",
            named_special_tokens=_GEMMA3_TOKENS,
        ),
    ]
}

_TORCHVISION_VIDEO = (
    "its processor has a video processor, which transformers 5.24 builds only with torchvision (not installed): "
    "neither the processor nor AutoProcessor.from_pretrained can be made without it"
)
_TORCHVISION_IMAGE = "its image processor has only a torchvision backend (torchvision is not installed)"
_NO_CHAT_TEMPLATE = (
    "its processor class takes no chat_template argument, so AutoProcessor.from_pretrained drops the saved template"
)

# Families of the installed transformers that this module does not build, and why.
SKIPPED_FAMILIES: dict[str, str] = {
    **dict.fromkeys(
        [
            "qwen2_vl",
            "qwen2_5_vl",
            "qwen3_vl",
            "qwen3_vl_moe",
            "qwen3_5",
            "qwen3_5_moe",
            "llava_onevision",
            "llava_next_video",
            "video_llava",
            "smolvlm",
            "internvl",
            "glm4v",
            "glm4v_moe",
            "glm46v",
            "video_llama_3",
            "lfm3_vl",
            "ernie4_5_vl_moe",
            "molmo2",
            "gemma4",
        ],
        _TORCHVISION_VIDEO,
    ),
    **dict.fromkeys(["cohere2_vision", "lfm2_vl", "llama4", "perception_lm"], _TORCHVISION_IMAGE),
    "mistral3": "PixtralProcessor requires torchvision (not installed)",
    "gemma3n": "its vision tower is a timm model, and timm needs torchvision (not installed)",
    **dict.fromkeys(
        ["blip-2", "instructblip", "chameleon", "fuyu", "git", "pix2struct", "florence2"], _NO_CHAT_TEMPLATE
    ),
}


# Torchvision families this module builds, yet not here: a module the processor also needs (model_type -> module),
# or a model the installed transformers cannot run (model_type -> why).
_ALSO_NEEDS = {"smolvlm": "num2words", "perception_lm": "timm", "gemma3n": "timm"}
_BROKEN: dict[str, str] = {}

# With torchvision installed, the families it makes buildable move from SKIPPED_FAMILIES to VLM_FAMILIES; the other
# torchvision families stay skipped, with the reason.
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
if HAS_TORCHVISION:
    for _name, _reason in SKIPPED_FAMILIES.items():
        if "torchvision" in _reason:
            SKIPPED_FAMILIES[_name] = "its processor needs torchvision, and this module has no builder for it yet"
    for _family in _torchvision_families():
        _name = _family.model_type
        _module = _ALSO_NEEDS.get(_name)
        if _name in _BROKEN:
            SKIPPED_FAMILIES[_name] = _BROKEN[_name]
        elif _module and importlib.util.find_spec(_module) is None:
            SKIPPED_FAMILIES[_name] = f"its processor needs {_module} (not installed)"
        else:
            VLM_FAMILIES[_name] = _family
            SKIPPED_FAMILIES.pop(_name, None)

# SWIFTKIT_TEST_TORCHVISION_FAMILIES_ONLY=1 (make test's run in .venv-vision): only the families that need torchvision;
# the others are tested in the main environment.
TORCHVISION_FAMILIES = frozenset(f.model_type for f in _torchvision_families())
if os.environ.get("SWIFTKIT_TEST_TORCHVISION_FAMILIES_ONLY") == "1":
    for _name in [n for n in VLM_FAMILIES if n not in TORCHVISION_FAMILIES]:
        del VLM_FAMILIES[_name]
        SKIPPED_FAMILIES[_name] = "needs no torchvision: tested in the main environment"


# ---------------------------------------------------------------------------------------------------------------------
# The public factory.


def make_vlm_tokenizer(family: str):
    """The tiny tokenizer with ``family``'s special tokens and chat template."""
    spec = VLM_FAMILIES[family]
    tok = make_tokenizer(
        spec.style,
        extra_special_tokens=spec.extra_special_tokens,
        named_special_tokens=spec.named_special_tokens,
    )
    tok.chat_template = chat_template(spec.placeholder, spec.style, spec.video_placeholder, spec.audio_placeholder)
    return tok


def make_tiny_vlm(family: str, seed: int = 0):
    """(model, processor) of ``family``: a random float32 model in eval mode and its processor."""
    import torch
    from transformers import AutoModelForImageTextToText

    spec = VLM_FAMILIES[family]
    tok = make_vlm_tokenizer(family)
    config, processor = spec.build(tok)
    processor.chat_template = tok.chat_template
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    mend_llama4_outputs(model)  # as swiftkit's loader does: transformers 5.24's Llama 4 forward fails without it
    # Some processors add tokens of their own (PaliGemma's <loc>/<seg>): the vocabulary must still cover them.
    if model.get_input_embeddings().num_embeddings < len(processor.tokenizer):
        raise ValueError(f"{family}: the model's vocabulary is smaller than its processor's tokenizer")
    generation = model.generation_config
    generation.eos_token_id = tok.eos_token_id
    generation.pad_token_id = tok.pad_token_id
    generation.bos_token_id = tok.bos_token_id
    return model.eval(), processor


def save_tiny_vlm(path: str | Path, family: str, seed: int = 0) -> Path:
    """Write a tiny ``family`` model (float32 safetensors) and its processor into ``path``.

    The processor saves the tokenizer and writes the chat template to chat_template.jinja, which both
    ``AutoProcessor`` and ``AutoTokenizer`` read back.
    """
    path = Path(path)
    model, processor = make_tiny_vlm(family, seed)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path


def tiny_image(color: tuple[int, int, int] = (255, 0, 0), size: int = 32):
    """A solid ``color`` RGB image of ``size`` x ``size`` pixels."""
    from PIL import Image

    return Image.new("RGB", (size, size), color)


def square_image(color: tuple[int, int, int] = (255, 0, 0), size: int = 32, bg: tuple[int, int, int] = (255, 255, 255)):
    """A ``bg`` RGB image of ``size`` px with a ``color`` square covering its middle half."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), bg)
    ImageDraw.Draw(image).rectangle([size // 4, size // 4, size - size // 4 - 1, size - size // 4 - 1], fill=color)
    return image
