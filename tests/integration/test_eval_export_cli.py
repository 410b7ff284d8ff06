"""`swiftkit export` and `swiftkit eval` end to end on a checkpoint trained by `swiftkit sft`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from hosts import registries
from test_sft_cli import write_jsonl

from swiftkit.cli.main import main

PROBE = [{"role": "user", "content": "What is 1+1?"}]

PLAIN_LOAD = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, out = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(folder)
tok = AutoTokenizer.from_pretrained(folder)
ids = tok.apply_chat_template(json.loads(sys.argv[3]), add_generation_prompt=True, return_dict=False)
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits
torch.save({"ids": ids, "logits": logits, "eos": model.generation_config.eos_token_id,
            "swiftkit_loaded": any(m.startswith("swiftkit") for m in sys.modules)}, out)
"""


def _adapter_logits(ckpt, merged: bool):
    from swiftkit.config import InferConfig
    from swiftkit.inference import load_for_inference

    model, template, _ = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)]}), registries=registries())
    ids = template.encode_prompt(PROBE)
    with torch.no_grad():
        if not merged:
            with model.disable_adapter():
                return ids, model(torch.tensor([ids])).logits, template
        return ids, model(torch.tensor([ids])).logits, template


def test_merged_export_loads_in_plain_transformers_with_the_training_template(trained, tmp_path):
    out = tmp_path / "merged"
    assert main(["export", "--adapters", str(trained), "--output_dir", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer_config.json",
            "export_info.json"} <= names
    assert not any(n.startswith("adapter_") for n in names)
    info = json.loads((out / "export_info.json").read_text())
    assert info["export_format"] == "merged" and info["adapters"] == [str(trained)]

    saved = tmp_path / "plain.pt"
    subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(out), str(saved), json.dumps(PROBE)],
                   check=True, capture_output=True, text=True, timeout=300)
    plain = torch.load(saved)
    assert plain["swiftkit_loaded"] is False
    ids, with_adapter, template = _adapter_logits(trained, merged=True)
    assert plain["ids"] == ids  # the exported chat template renders training's prompt
    assert torch.allclose(plain["logits"], with_adapter, atol=1e-5)
    _, base, _ = _adapter_logits(trained, merged=False)
    assert not torch.allclose(plain["logits"], base, atol=1e-4)  # the adapter really is merged in
    eos = plain["eos"] if isinstance(plain["eos"], list) else [plain["eos"]]
    assert set(template.stop_token_ids) <= set(eos)


def test_export_never_overwrites_and_unknown_format_lists_valid_ones(trained, tmp_path, capsys):
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    assert main(["export", "--adapters", str(trained), "--output_dir", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]

    target = tmp_path / "gguf-out"
    assert main(["export", "--adapters", str(trained), "--output_dir", str(target), "--export_format", "ggfu"]) == 2
    err = capsys.readouterr().err
    assert "unknown --export_format 'ggfu'" in err and "valid --export_format values: " in err
    assert {"merged", "gguf", "torchao", "bnb", "gptq", "awq"} <= set(err.split("valid --export_format values: ")[1]
                                                                     .split(".")[0].replace(",", " ").split())
    assert not target.exists()


def test_failing_plugin_exporter_leaves_nothing_behind(trained, tmp_path, capsys):
    plugin = tmp_path / "broken_export.py"
    plugin.write_text(textwrap.dedent("""
        import swiftkit

        @swiftkit.hookimpl
        def swiftkit_get_export_format(name, config):
            if name != "half-done":
                return None
            def export(model, tokenizer, output_dir, config):
                (output_dir / "part-1.bin").write_bytes(b"x")
                raise RuntimeError("disk full while writing part 2")
            return export
    """))
    target = tmp_path / "exported"
    assert main(["export", "--adapters", str(trained), "--output_dir", str(target),
                 "--export_format", "half-done", "--plugins", str(plugin)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(
        f"swiftkit export: error: plugin 'file:{plugin}' (file {plugin}) failed in export format "
        "'half-done': RuntimeError: disk full while writing part 2")
    assert "Traceback" not in err
    assert list(tmp_path.glob("*exported*")) == []


ENGINE_PLUGIN = """
import swiftkit

class Upper:
    '''Replies with the last user message in capitals.'''
    def generate(self, conversations, **generation):
        return [conv[-1]["content"].upper() for conv in conversations]
    def stream(self, messages, **generation):
        yield messages[-1]["content"].upper()

class Yes:
    def evaluate(self, engine, config):
        replies = engine.generate([[{"role": "user", "content": "yes"}]])
        return {"metrics": {"says_yes": float(replies[0] == "YES")}, "samples": [{"reply": replies[0]}]}

@swiftkit.hookimpl
def swiftkit_choice_names(kind):
    return {"infer_engine": ["upper"], "eval_benchmark": ["says-yes"]}.get(kind, [])

@swiftkit.hookimpl
def swiftkit_get_infer_engine(name, model, template, config):
    return Upper() if name == "upper" else None

@swiftkit.hookimpl
def swiftkit_get_eval_benchmark(name, config, registries):
    return Yes() if name == "says-yes" else None
"""


def test_eval_qa_scores_replies_and_plugin_benchmarks_run_too(trained, tmp_path):
    plugin = tmp_path / "upper_engine.py"
    plugin.write_text(ENGINE_PLUGIN)
    val = write_jsonl(tmp_path / "qa.jsonl", [
        {"query": "abc", "response": "ABC"},  # exact
        {"query": "hello world", "response": "hello"},  # contained, not exact
        {"query": "x", "response": "y"},  # wrong
        {"query": "never scored", "response": "NEVER SCORED"},  # beyond --eval_limit
    ])
    out = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, "-m", "swiftkit.cli.main", "eval", "--adapters", str(trained), "--val_dataset", str(val),
         "--eval_dataset", "qa", "says-yes", "--eval_limit", "3", "--infer_backend", "upper",
         "--plugins", str(plugin), "--eval_output_dir", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = list(out.iterdir())
    qa = json.loads((run / "qa" / "metrics.json").read_text())
    assert qa["num_samples"] == 3
    assert qa["exact_match"] == pytest.approx(1 / 3) and qa["contains"] == pytest.approx(2 / 3)
    assert qa["f1"] == pytest.approx((1 + 2 / 3) / 3)
    samples = [json.loads(line) for line in (run / "qa" / "samples.jsonl").read_text().splitlines()]
    assert [s["reply"] for s in samples] == ["ABC", "HELLO WORLD", "X"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["results"]["says-yes"] == {"says_yes": 1.0}
    assert "eval qa: exact_match=0.3333" in proc.stderr


def test_eval_unknown_benchmark_fails_before_loading_weights(trained, tmp_path, capsys):
    val = write_jsonl(tmp_path / "qa.jsonl", [{"query": "a", "response": "b"}])
    assert main(["eval", "--adapters", str(trained), "--val_dataset", str(val), "--eval_dataset", "gsm8kk",
                 "--eval_output_dir", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert "unknown --eval_dataset 'gsm8kk'" in err and "did you mean 'gsm8k'" in err and "valid --eval_dataset values:" in err
    assert "infer: model" not in err and not (tmp_path / "eval").exists()


def test_eval_qa_without_val_dataset_is_a_config_error(trained, capsys):
    assert main(["eval", "--adapters", str(trained)]) == 2
    assert "--eval_dataset qa scores --val_dataset rows" in capsys.readouterr().err
