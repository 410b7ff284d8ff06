"""`swiftkit quantize` / `swiftkit export --quant_method` end to end on checkpoints trained by `swiftkit sft`:
every method that runs on this CPU quantizes, is checked against the source (parity.json), and loads back
through `swiftkit infer --model`."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest
from test_sft_cli import ROWS, run_sft, write_jsonl

from swiftkit.cli.main import main

QUESTIONS = [{"messages": [{"role": "user", "content": "What is the capital of France?"}]},
             {"messages": [{"role": "user", "content": "Write a poem about the sea."}]}]


def _weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".gguf"))


def _infer(model_folder: Path, tmp_path: Path, name: str) -> list[str]:
    questions = write_jsonl(tmp_path / f"{name}-q.jsonl", QUESTIONS)
    result = tmp_path / f"{name}-replies.jsonl"
    assert main(["infer", "--model", str(model_folder), "--val_dataset", str(questions), "--max_new_tokens", "8",
                 "--result_path", str(result)]) == 0
    replies = [json.loads(line)["response"] for line in result.read_text().splitlines()]
    assert len(replies) == len(QUESTIONS)
    return replies


@pytest.fixture(scope="module")
def merged(trained, tmp_path_factory):
    """The trained checkpoint exported as merged safetensors (the full-precision reference size)."""
    out = tmp_path_factory.mktemp("merged") / "merged"
    assert main(["export", "--adapters", str(trained), "--output_dir", str(out)]) == 0
    return out


def test_merged_export_writes_parity_report_card_and_info(merged, trained):
    parity = json.loads((merged / "parity.json").read_text())
    assert parity["ok"] is True and parity["failures"] == []
    assert parity["logits"]["max_abs_diff"] < 1e-4  # merged == base + adapter, up to float rounding
    assert parity["logits"]["top1_agreement"] == 1.0
    info = json.loads((merged / "export_info.json").read_text())
    assert info["export_format"] == "merged" and info["adapters"] == [str(trained)]
    assert info["parity"] == "parity.json"
    card = (merged / "README.md").read_text()
    assert card.startswith("---\n") and "swiftkit" in card


@pytest.mark.parametrize(("argv", "label", "max_ratio", "max_logit_diff"), [
    # measured on the tiny model: size ratio 0.62 / 0.63 / 0.58 / 0.61 / 0.29 / 0.17, max |logit diff| 0.005 / 0.07 /
    # 0.08 / 0.007 / 0.008 / 0.11 (its logits span about +-0.7)
    (["--quant_method", "torchao", "--quant_bits", "8"], "torchao-int8", 0.65, 0.05),
    (["--quant_method", "torchao", "--quant_bits", "4", "--group_size", "32"], "torchao-int4", 0.67, 0.3),
    (["--quant_method", "bnb", "--quant_bits", "4"], "bnb-nf4", 0.61, 0.3),
    (["--quant_method", "bnb", "--quant_bits", "8"], "bnb-int8", 0.64, 0.05),
    (["--quant_method", "gguf", "--gguf_type", "q8_0"], "gguf-q8_0", 0.32, 0.05),
    (["--quant_method", "gguf", "--gguf_type", "q4_0"], "gguf-q4_0", 0.19, 0.4),
])
def test_each_cpu_method_quantizes_checks_parity_and_serves_through_infer(trained, merged, tmp_path, argv, label,
                                                                          max_ratio, max_logit_diff):
    out = tmp_path / label
    assert main(["quantize", "--adapters", str(trained), "--output_dir", str(out), *argv]) == 0
    parity = json.loads((out / "parity.json").read_text())
    assert parity["ok"] is True, parity["failures"]
    assert parity["template_ok"] is True and parity["stop_tokens_ok"] is True
    assert 0 < parity["logits"]["max_abs_diff"] < max_logit_diff, parity["logits"]
    # The tiny model's embeddings (512 x 64) stay full precision in the safetensors formats: they weigh a lot here.
    ratio = _weights_bytes(out) / _weights_bytes(merged)
    assert ratio < max_ratio
    info = json.loads((out / "export_info.json").read_text())
    assert info["label"] == label and info["quantization"]["method"] == argv[1]
    _infer(out, tmp_path, label)


def test_to_ollama_writes_a_modelfile_beside_the_gguf(trained, tmp_path):
    out = tmp_path / "ollama"
    assert main(["export", "--adapters", str(trained), "--to_ollama", "--gguf_type", "f16",
                 "--output_dir", str(out)]) == 0
    modelfile = (out / "Modelfile").read_text()
    gguf = next(out.glob("*.gguf"))
    assert f"FROM ./{gguf.name}" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "TEMPLATE" in modelfile


def test_a_wrong_chat_template_in_the_artifact_fails_the_export_and_leaves_nothing(trained, tmp_path, capsys):
    plugin = tmp_path / "drifting_export.py"
    plugin.write_text(textwrap.dedent("""
        import swiftkit

        @swiftkit.hookimpl
        def swiftkit_choice_names(kind):
            return ["drifted"] if kind == "export_format" else []

        @swiftkit.hookimpl
        def swiftkit_get_export_format(name, config):
            if name != "drifted":
                return None
            def export(model, tokenizer, output_dir, config):
                model.save_pretrained(output_dir)
                tokenizer.chat_template = tokenizer.chat_template.replace("<|im_start|>", "<|im_start|> ")
                tokenizer.save_pretrained(output_dir)
            return export
    """))
    out = tmp_path / "drifted"
    assert main(["export", "--adapters", str(trained), "--export_format", "drifted", "--plugins", str(plugin),
                 "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "template" in err.splitlines()[-1] and "conversation" in err.splitlines()[-1]
    assert "Traceback" not in err
    assert list(tmp_path.glob("*drifted*")) == []


def _garbage_weights(model_dir: Path, tmp_path: Path) -> Path:
    """A copy of a tiny model whose weights file no loader reads."""
    broken = tmp_path / f"broken-{model_dir.name}"
    broken.mkdir()
    for f in model_dir.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    return broken


@pytest.mark.skipif(importlib.util.find_spec("gptqmodel") is not None, reason="GPTQModel is installed here")
def test_an_unavailable_method_fails_before_any_weights_load(tmp_path, capsys, tiny_model_dir):
    # Weights that would fail to load: the error must be the missing library's, raised first.
    broken = _garbage_weights(tiny_model_dir("llama", "chatml"), tmp_path)
    assert main(["quantize", "--model", str(broken), "--quant_method", "gptq", "--group_size", "32", "--output_dir",
                 str(tmp_path / "gptq")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "swiftkit[gptq]" in line and "safetensors" not in line
    assert not (tmp_path / "gptq").exists()


def test_gguf_refuses_an_architecture_it_cannot_write_before_weights_load(tmp_path, capsys, tiny_model_dir):
    broken = _garbage_weights(tiny_model_dir("gpt2", "chatml"), tmp_path)
    assert main(["quantize", "--model", str(broken), "--quant_method", "gguf", "--output_dir",
                 str(tmp_path / "g")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "model type 'gpt2' is not supported" in line and "llama" in line
    assert not (tmp_path / "g").exists()


def test_quantize_needs_a_method_and_export_a_model(capsys):
    assert main(["quantize", "--model", "x"]) == 2
    assert "needs --quant_method" in capsys.readouterr().err
    assert main(["export"]) == 2
    assert "needs --adapters" in capsys.readouterr().err


def test_qlora_adapter_merges_into_the_dequantized_base_it_was_trained_on(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS * 2)
    run = run_sft(tiny_model_dir("llama", "chatml"), data, tmp_path / "out", "--max_steps", "2",
                  "--train_type", "qlora", "--lora_rank", "8")
    ckpt = run / "checkpoint-2"
    diffs = {}
    for how in ("dequantized", "full_precision"):
        out = tmp_path / how
        assert main(["export", "--adapters", str(ckpt), "--qlora_merge", how, "--output_dir", str(out)]) == 0
        diffs[how] = json.loads((out / "parity.json").read_text())["logits"]["max_abs_diff"]
        info = json.loads((out / "export_info.json").read_text())
        assert info["training_quantization"]["quant_bits"] == 4 and info["qlora_merge"] == how
    # The adapter was trained against the 4-bit weights: merging into their dequantized values keeps its answers.
    assert diffs["dequantized"] < diffs["full_precision"]
    assert diffs["dequantized"] < 0.05


def test_export_of_a_plain_model_without_adapters(tiny_model_dir, tmp_path):
    out = tmp_path / "plain-gguf"
    assert main(["quantize", "--model", str(tiny_model_dir("qwen2", "chatml")), "--quant_method", "gguf",
                 "--quant_bits", "8", "--output_dir", str(out)]) == 0
    assert [p.name for p in out.glob("*.gguf")] == ["model-q8_0.gguf"]
    assert json.loads((out / "parity.json").read_text())["ok"] is True


@pytest.mark.parametrize("argv", [["--quant_method", "gguf", "--gguf_type", "q8_0"],
                                  ["--quant_method", "torchao", "--quant_bits", "8"]])
def test_eval_and_deploy_serve_a_quantized_folder_as_model(trained, tmp_path, argv):
    import openai
    from test_deploy import free_port, start_server

    from swiftkit.config.commands import DeployConfig

    out = tmp_path / argv[1]
    assert main(["quantize", "--adapters", str(trained), "--output_dir", str(out), *argv]) == 0
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"messages": [{"role": "user", "content": "What is 1+1?"},
                                                             {"role": "assistant", "content": "2"}]}])
    assert main(["eval", "--model", str(out), "--val_dataset", str(qa), "--max_new_tokens", "4",
                 "--eval_output_dir", str(tmp_path / "eval")]) == 0
    summary = json.loads(next((tmp_path / "eval").rglob("summary.json")).read_text())
    assert summary["model"] == str(out) and summary["results"]["qa"]["num_samples"] == 1

    port = free_port()
    cfg = DeployConfig.from_flat({"model": str(out), "served_model_name": "q", "port": port, "max_new_tokens": 6})
    _, server, thread = start_server(cfg)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model="q", messages=[{"role": "user", "content": "Hello!"}])
        assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.completion_tokens > 0
    finally:
        server.should_exit = True
        thread.join(30)
