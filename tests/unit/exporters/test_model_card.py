"""The model card: YAML front matter the hubs read, and a body built from the training run's own records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import swiftkit
from swiftkit.cli.main import main
from swiftkit.config import ExportConfig, QuantizeConfig
from swiftkit.exporters.model_card import write_model_card

ROWS = [{"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi there."}]},
        {"messages": [{"role": "user", "content": "What is 1+1?"}, {"role": "assistant", "content": "2"}]}]


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """A real `swiftkit sft` LoRA run on the tiny model (about 3 s): its last checkpoint and base folder."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sft-run")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS * 2))
    model_dir = tiny_model_dir("llama", "chatml")
    assert main(["sft", "--model", str(model_dir), "--dataset", str(data), "--output_dir", str(root / "out"),
                 "--max_steps", "1", "--lora_rank", "4", "--lora_alpha", "16", "--learning_rate", "2e-4",
                 "--max_length", "256", "--per_device_train_batch_size", "2", "--report_to", "none"]) == 0
    run = next((root / "out").glob("v0-*"))
    return run / "checkpoint-1", model_dir


def split_card(path: Path) -> tuple[dict, str]:
    text = path.read_text(encoding="utf-8")
    m = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert m, "the card must open with YAML front matter"
    meta = yaml.safe_load(m.group(1))
    assert isinstance(meta, dict)
    return meta, m.group(2)


def artifact(tmp_path: Path, *files: str) -> Path:
    folder = tmp_path / "artifact"
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes(b"\0" * 64)
    return folder


def test_card_of_a_quantized_sft_run_carries_its_records(trained, tmp_path):
    ckpt, model_dir = trained
    folder = artifact(tmp_path, "model.safetensors", "config.json")
    cfg = QuantizeConfig.from_flat({"adapters": [str(ckpt)], "quant_method": "gptq", "quant_bits": 4,
                                    "group_size": 32, "hub_model_id": "alice/tiny-gptq", "use_hf": True})
    info = {"method": "gptq", "label": "gptq-int4", "base_model": str(model_dir),
            "base_model_name": "HuggingFaceTB/SmolLM2-135M-Instruct", "adapters": [str(ckpt)], "template": "model"}
    parity = {"template_ok": True, "stop_tokens_ok": True, "top1_agreement": 0.9375, "max_logit_diff": 0.8125,
              "mean_logit_diff": 0.0625, "perplexity": {"source": 41.5, "artifact": 43.25}}
    path = write_model_card(folder, info=info, config=cfg, parity=parity)

    assert path == folder / "README.md"
    meta, body = split_card(path)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["library_name"] == "transformers"
    assert {"swiftkit", "gptq", "quantized"} <= set(meta["tags"])
    assert "datasets" not in meta  # trained on a local file: no hub dataset to link

    manifest = json.loads((ckpt.parent / "manifest.json").read_text())
    assert f"`{manifest['data_fingerprint']}`" in body
    assert f"`{manifest['template_fingerprint']}`" in body
    assert "| LoRA rank | 4 |" in body and "| LoRA alpha | 16 |" in body
    assert "| Learning rate | 0.0002 |" in body and "| Max length | 256 |" in body
    assert "| Train type | lora |" in body and "| Max steps | 1 |" in body
    assert "| Bits per weight | 4 |" in body and "| Group size | 32 |" in body
    assert "A 4-bit gptq quantization of HuggingFaceTB/SmolLM2-135M-Instruct" in body
    assert f"{ckpt.parent.name}/checkpoint-1" in body
    assert "| Top-1 token agreement | 93.75% |" in body
    assert "| Perplexity, source model | 41.5 |" in body and "| Perplexity, this artifact | 43.25 |" in body
    assert 'path = "alice/tiny-gptq"' in body and "gptqmodel" in body
    assert f"swiftkit {swiftkit.__version__}" in body
    assert str(tmp_path) not in body and str(model_dir) not in body  # no local paths in a card that may be public


def test_eval_summary_of_the_adapter_is_shown_and_others_are_not(trained, tmp_path):
    ckpt, model_dir = trained
    # `swiftkit eval --eval_output_dir RUN/eval_output` writes RUN/eval_output/<timestamp>/summary.json like this.
    for stamp, adapter, score in (("20260101-000000", ckpt, 0.625), ("20260101-000001", tmp_path / "other", 0.125)):
        out = ckpt.parent / "eval_output" / stamp
        out.mkdir(parents=True)
        (out / "summary.json").write_text(json.dumps({
            "model": str(model_dir), "adapters": [str(adapter)], "template": "model",
            "results": {"qa": {"exact_match": score, "f1": score, "num_samples": 8}}}))
    cfg = ExportConfig.from_flat({"adapters": [str(ckpt)]})
    _, body = split_card(write_model_card(artifact(tmp_path, "model.safetensors"),
                                          info={"method": "merged", "adapters": [str(ckpt)]}, config=cfg))
    assert "## Evaluation" in body
    assert "| qa | exact_match | 0.625 |" in body and "| qa | num_samples | 8 |" in body
    assert "0.125" not in body


def test_gguf_card_names_llama_cpp_and_ollama(tmp_path):
    folder = artifact(tmp_path, "tiny-q8_0.gguf", "Modelfile")
    cfg = QuantizeConfig.from_flat({"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "quant_method": "gguf",
                                    "gguf_type": "q8_0", "to_ollama": True})
    meta, body = split_card(write_model_card(folder, info={"method": "gguf", "base_model_name": cfg.model.model},
                                             config=cfg))
    assert meta["library_name"] == "gguf"
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["base_model_relation"] == "quantized"
    assert {"swiftkit", "gguf", "quantized"} <= set(meta["tags"])
    assert "| GGUF tensor type | q8_0 |" in body
    assert "llama-cli -m tiny-q8_0.gguf" in body
    assert "ollama create artifact -f Modelfile" in body
    assert 'gguf_file="tiny-q8_0.gguf"' in body


def test_full_precision_outputs_are_not_tagged_quantized(tmp_path):
    cfg = QuantizeConfig.from_flat({"model": "m", "quant_method": "gguf", "gguf_type": "f16"})
    meta, body = split_card(write_model_card(artifact(tmp_path, "m-f16.gguf"), info={"method": "gguf"}, config=cfg))
    assert "quantized" not in meta["tags"] and "base_model" not in meta
    assert "| Quantized | no (full precision) |" in body

    merged = tmp_path / "merged"
    merged.mkdir()
    meta, body = split_card(write_model_card(merged, info={}, config=ExportConfig.from_flat({"model": "m"})))
    assert meta["tags"] == ["swiftkit", "merged"] and meta["library_name"] == "transformers"
    assert "a full-precision transformers model" in body.lower()


def test_card_tolerates_missing_and_broken_run_records(tmp_path):
    no_manifest = tmp_path / "run" / "checkpoint-5"
    no_manifest.mkdir(parents=True)
    (no_manifest / "adapter_config.json").write_text("{}")
    (no_manifest / "args.json").write_text(json.dumps({
        "command": "sft", "train_type": "lora", "lora_rank": 16, "lora_alpha": 32, "learning_rate": 1e-4,
        "num_train_epochs": 3.0, "max_steps": -1, "max_length": 1024,
        "dataset": ["hf::someone/chat-data:default#500", "AI-ModelScope/alpaca-gpt4-data-en", "alpaca-gpt4",
                    str(tmp_path / "mine.jsonl")]}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "args.json").write_text("{not json")
    bare = tmp_path / "bare"
    bare.mkdir()
    cfg = ExportConfig.from_flat({"adapters": [str(no_manifest)]})
    meta, body = split_card(write_model_card(
        artifact(tmp_path, "model.safetensors"), info={"adapters": [str(no_manifest), str(broken), str(bare)]},
        config=cfg))
    assert meta["datasets"] == ["someone/chat-data", "AI-ModelScope/alpaca-gpt4-data-en"]
    assert "| LoRA rank | 16 |" in body and "| Epochs | 3 |" in body and "Max steps" not in body
    assert "fingerprint" not in body  # no manifest: nothing invented
    assert "mine.jsonl" in body and str(tmp_path) not in body
    assert body.count("## Training") == 1  # the broken and the bare folder add no section
