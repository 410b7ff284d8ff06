"""Vision-language model types: enough of them, loadable by the installed transformers, found from config.json."""

from __future__ import annotations

import json

import pytest
import transformers
from packaging.requirements import Requirement
from packaging.version import Version
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from swiftkit.models import resolve_model
from swiftkit.models.registry import infer_model_type, model_types, type_candidates

INSTALLED = Version(transformers.__version__)
IMAGE_TEXT_TO_TEXT = set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.values())

# (config.json model_type, architecture) of common vision-language checkpoints.
VLM_CONFIGS = [
    ("qwen2_vl", "Qwen2VLForConditionalGeneration"),
    ("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration"),
    ("qwen3_vl", "Qwen3VLForConditionalGeneration"),
    ("qwen3_vl_moe", "Qwen3VLMoeForConditionalGeneration"),
    ("llava", "LlavaForConditionalGeneration"),
    ("llava_next", "LlavaNextForConditionalGeneration"),
    ("llava_onevision", "LlavaOnevisionForConditionalGeneration"),
    ("internvl", "InternVLForConditionalGeneration"),
    ("idefics3", "Idefics3ForConditionalGeneration"),
    ("smolvlm", "SmolVLMForConditionalGeneration"),
    ("gemma3", "Gemma3ForConditionalGeneration"),
    ("paligemma", "PaliGemmaForConditionalGeneration"),
    ("mllama", "MllamaForConditionalGeneration"),
    ("llama4", "Llama4ForConditionalGeneration"),
    ("mistral3", "Mistral3ForConditionalGeneration"),
    ("glm4v_moe", "Glm4vMoeForConditionalGeneration"),
]


@pytest.fixture(scope="module")
def vision_types(model_registry):
    return {name: e for name, e in model_types(model_registry).items() if "vision" in e.tags}


def _unmet_transformers_requirement(entry) -> str | None:
    """The entry's transformers requirement when the installed version does not satisfy it."""
    for spec in entry.requires:
        req = Requirement(spec)
        if req.name == "transformers" and not req.specifier.contains(INSTALLED, prereleases=True):
            return spec
    return None


def test_at_least_thirty_vision_types(vision_types):
    assert len(vision_types) >= 30, sorted(vision_types)


def test_vision_architectures_exist_in_the_installed_transformers(vision_types):
    missing = {
        name: [a for a in e.architectures if not hasattr(transformers, a)]
        for name, e in vision_types.items()
        if _unmet_transformers_requirement(e) is None
    }
    assert not {name: archs for name, archs in missing.items() if archs}


def test_vision_architectures_load_as_image_text_to_text(vision_types):
    outside = {name: e.architectures for name, e in vision_types.items()
               if not set(e.architectures) <= IMAGE_TEXT_TO_TEXT}
    assert not outside


def test_vision_types_state_the_transformers_version_of_their_architecture(vision_types):
    for name, e in vision_types.items():
        assert any(Requirement(r).name == "transformers" for r in e.requires), name


@pytest.mark.parametrize("model_type, architecture", VLM_CONFIGS, ids=[m for m, _ in VLM_CONFIGS])
def test_config_json_of_a_vlm_finds_vision_types(model_registry, model_type, architecture):
    config = {"architectures": [architecture], "model_type": model_type}
    candidates = type_candidates(config, model_registry)
    assert candidates, model_type
    assert all("vision" in c.tags and c.model_type == model_type for c in candidates)
    assert infer_model_type(config, model_registry) == model_type


def test_unregistered_vlm_folder_resolves_to_its_vision_type(tmp_path, model_registry):
    folder = tmp_path / "my-glm-4.5v-finetune"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["Glm4vMoeForConditionalGeneration"], "model_type": "glm4v_moe"}))
    resolved = resolve_model(str(folder), registry=model_registry)
    assert (resolved.model_type, resolved.entry.type, resolved.candidates) == ("glm4v_moe", "glm4_5v", ())

    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["Idefics3ForConditionalGeneration"], "model_type": "idefics3"}))
    resolved = resolve_model(str(folder), registry=model_registry)
    assert resolved.model_type == "idefics3" and resolved.entry is None
    assert {"idefics3", "smolvlm", "smolvlm_small"} <= set(resolved.candidates)


def test_registered_vlm_names_carry_their_type(model_registry):
    for name, type_name in [("qwen2.5-vl-7b-instruct", "qwen2_5_vl"), ("llava-1.5-7b", "llava1_5"),
                            ("pixtral-12b", "pixtral"), ("internvl3-8b", "internvl3"),
                            ("smolvlm2-2.2b-instruct", "smolvlm2"), ("gemma-3-4b-it", "gemma3")]:
        entry = model_registry.get(name)
        assert entry.type == type_name and "vision" in entry.tags, name
