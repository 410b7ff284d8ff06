"""`swiftkit sft` / `pt` end to end on tiny random models built locally: outputs, resume, tuners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hosts import registries

from swiftkit.cli.main import main

ROWS = [
    {"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi, how can I help?"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1+1?"},
                  {"role": "assistant", "content": "2"}]},
    {"query": "Write a poem about the sea.", "response": "The sea and the sky."},
    {"instruction": "Add numbers", "input": "1 2", "output": "3"},
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", ROWS * 4)


def run_sft(model_dir, data_file, out, *extra, command="sft"):
    argv = [command, "--model", str(model_dir), "--dataset", str(data_file), "--output_dir", str(out),
            "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--report_to", "none",
            "--logging_steps", "1", *extra]
    assert main(argv) == 0
    runs = sorted(Path(out).glob("v*-*"))
    return runs[-1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_lora_run_writes_portable_outputs(tiny_model_dir, data_file, tmp_path):
    model_dir = tiny_model_dir("llama", "chatml")
    run = run_sft(model_dir, data_file, tmp_path / "out", "--max_steps", "4", "--save_steps", "2",
                  "--report_to", "tensorboard")
    assert run.name.startswith("v0-")
    args = json.loads((run / "args.json").read_text())
    assert args["command"] == "sft" and args["model"] == str(model_dir) and args["lora_rank"] == 8
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["data_fingerprint"]) == 64 and len(manifest["template_fingerprint"]) == 64
    assert manifest["versions"]["transformers"] and manifest["seed"] == 42
    logs = read_jsonl(run / "logging.jsonl")
    assert [r["step"] for r in logs if "loss" in r][:4] == [1, 2, 3, 4]
    assert all(r["train_tokens_per_s"] > 0 for r in logs if "loss" in r)
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run / "runs").rglob("events.out.tfevents.*"))
    for step in (2, 4):
        ckpt = run / f"checkpoint-{step}"
        assert (ckpt / "adapter_model.safetensors").is_file()
        assert json.loads((ckpt / "args.json").read_text()) == args
        assert (ckpt / "tokenizer_config.json").is_file()
    result = json.loads((run / "train_result.json").read_text())
    assert result["global_step"] == 4 and result["last_checkpoint"].endswith("checkpoint-4")

    # A second run gets the next version number.
    run2 = run_sft(model_dir, data_file, tmp_path / "out", "--max_steps", "1")
    assert run2.name.startswith("v1-")


def test_adapter_loads_with_plain_peft_and_matches_swiftkit(tiny_model_dir, data_file, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.config import InferConfig
    from swiftkit.inference import load_for_inference

    model_dir = tiny_model_dir("qwen2", "chatml")
    run = run_sft(model_dir, data_file, tmp_path / "out", "--max_steps", "3")
    ckpt = run / "checkpoint-3"

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    plain = PeftModel.from_pretrained(base, ckpt).eval()
    tok = AutoTokenizer.from_pretrained(ckpt)
    ids = tok.apply_chat_template([{"role": "user", "content": "Hello!"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    ours, template, _ = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)]}), registries=registries())
    with torch.no_grad():
        a = plain(input_ids=ids).logits
        b = ours(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert template.encode_prompt([{"role": "user", "content": "Hello!"}]) == ids[0].tolist()


def test_resume_continues_the_same_run(tiny_model_dir, data_file, tmp_path):
    model_dir = tiny_model_dir("llama", "chatml")
    full = run_sft(model_dir, data_file, tmp_path / "a", "--max_steps", "4", "--save_steps", "2")
    full_losses = {r["step"]: r["loss"] for r in read_jsonl(full / "logging.jsonl") if "loss" in r}

    part = run_sft(model_dir, data_file, tmp_path / "b", "--max_steps", "4", "--save_steps", "2")
    # Pretend the run died after step 2: drop the later checkpoint, then resume from the run dir.
    import shutil

    shutil.rmtree(part / "checkpoint-4")
    assert main(["sft", "--resume_from_checkpoint", str(part), "--dataset", str(data_file),
                 "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--report_to", "none",
                 "--logging_steps", "1", "--max_steps", "4", "--save_steps", "2"]) == 0
    assert (part / "checkpoint-4" / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [part.name]  # no new run dir
    resumed = [r for r in read_jsonl(part / "logging.jsonl") if "loss" in r]
    assert resumed[-1]["step"] == 4
    assert resumed[-1]["loss"] == pytest.approx(full_losses[4], rel=1e-4)


def test_resuming_a_run_that_reached_max_steps_is_refused_and_trains_nothing(tiny_model_dir, data_file, tmp_path,
                                                                             capsys):
    model_dir = tiny_model_dir("llama", "chatml")
    run = run_sft(model_dir, data_file, tmp_path / "a", "--max_steps", "2", "--save_steps", "1")
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert main(["sft", "--resume_from_checkpoint", str(run), "--dataset", str(data_file), "--report_to", "none",
                 "--max_steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint-2 is at step 2, and --max_steps is 2: nothing is left to train; raise --max_steps" in err
    assert sorted(p.name for p in run.iterdir()) == before  # no checkpoint-3, nothing rewritten


@pytest.mark.parametrize("train_type", ["full", "freeze"])
def test_full_and_freeze_write_loadable_weights(tiny_model_dir, data_file, tmp_path, train_type):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model_dir = tiny_model_dir("llama", "chatml")
    run = run_sft(model_dir, data_file, tmp_path / "out", "--max_steps", "2", "--train_type", train_type)
    ckpt = run / "checkpoint-2"
    trained = AutoModelForCausalLM.from_pretrained(ckpt)
    before = load_file(str(model_dir / "model.safetensors"))
    after = load_file(str(ckpt / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert trained.config.num_hidden_layers == 2
    if train_type == "full":
        assert any(k.startswith("model.layers.0.") for k in changed)
    else:  # only the last layer and the final norm train
        assert changed and all(k.startswith(("model.layers.1.", "model.norm")) for k in changed)


def test_pt_trains_on_every_token_of_raw_text(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("llama", None)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog.\n\nHello world, numbers 1 2 3.\n" * 4)
    run = run_sft(model_dir, corpus, tmp_path / "out", "--max_steps", "2", command="pt")
    assert json.loads((run / "args.json").read_text())["command"] == "pt"
    assert (run / "checkpoint-2" / "adapter_model.safetensors").is_file()


def test_bad_row_names_file_and_line_and_leaves_nothing(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n" + '{"messages": [{"role": "user", "content": "hi"}\n')
    out = tmp_path / "out"
    assert main(["sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(bad),
                 "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err
    assert not out.exists() or not any(out.iterdir())


def test_missing_model_dir_is_a_clear_error(data_file, tmp_path, capsys):
    assert main(["sft", "--model", str(tmp_path / "nope"), "--dataset", str(data_file),
                 "--output_dir", str(tmp_path / "out")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_padding_free_matches_padded_loss(tiny_model_dir, data_file, tmp_path):
    model_dir = tiny_model_dir("llama", "chatml")
    a = run_sft(model_dir, data_file, tmp_path / "a", "--max_steps", "1", "--padding_free", "true")
    b = run_sft(model_dir, data_file, tmp_path / "b", "--max_steps", "1", "--padding_free", "false")
    la = [r["loss"] for r in read_jsonl(a / "logging.jsonl") if "loss" in r][0]
    lb = [r["loss"] for r in read_jsonl(b / "logging.jsonl") if "loss" in r][0]
    assert la == pytest.approx(lb, rel=1e-4)


def test_list_commands(capsys):
    for kind, expected in (("models", "smollm2-135m-instruct"), ("datasets", "self-cognition"),
                           ("templates", "chatml"), ("preprocessors", "self_cognition"), ("rewards", "accuracy")):
        assert main(["list", kind]) == 0
        assert expected in capsys.readouterr().out


def test_validation_split_logs_eval_loss(tiny_model_dir, data_file, tmp_path):
    run = run_sft(tiny_model_dir("llama", "chatml"), data_file, tmp_path / "out", "--max_steps", "4",
                  "--split_dataset_ratio", "0.25", "--save_steps", "2", "--eval_steps", "2",
                  "--per_device_eval_batch_size", "2")
    evals = [r for r in read_jsonl(run / "logging.jsonl") if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["eval_loss"] > 0 for r in evals)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["num_val_rows"] == 4 and manifest["num_train_rows"] == 12


def test_plugin_lr_scheduler_and_config_field(tiny_model_dir, data_file, tmp_path):
    plugin = tmp_path / "sched_plugin.py"
    plugin.write_text(
        "import torch, swiftkit\n"
        "from swiftkit.config.plugin_fields import PluginField\n"
        "@swiftkit.hookimpl\n"
        "def swiftkit_add_config_fields(command):\n"
        "    return [PluginField('halving_factor', float, 0.5, 'LR multiplier per step.')]\n"
        "@swiftkit.hookimpl\n"
        "def swiftkit_get_lr_scheduler(name, optimizer, num_training_steps, config):\n"
        "    if name != 'halving':\n"
        "        return None\n"
        "    factor = config.plugin_options['halving_factor']\n"
        "    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor ** step)\n"
    )
    run = run_sft(tiny_model_dir("llama", "chatml"), data_file, tmp_path / "out", "--max_steps", "3",
                  "--plugins", str(plugin), "--lr_scheduler_type", "halving", "--halving_factor", "0.25")
    lrs = [r["learning_rate"] for r in read_jsonl(run / "logging.jsonl") if "learning_rate" in r]
    assert lrs[:3] == pytest.approx([1e-3, 2.5e-4, 6.25e-5])
    assert json.loads((run / "args.json").read_text())["halving_factor"] == 0.25


def test_unknown_lr_scheduler_is_a_clear_error(tiny_model_dir, data_file, tmp_path, capsys):
    assert main(["sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(data_file),
                 "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--report_to", "none",
                 "--lr_scheduler_type", "halvign"]) == 2
    assert "--lr_scheduler_type 'halvign'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_loss_type_leaves_no_run_dir(tiny_model_dir, data_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(data_file),
                 "--output_dir", str(out), "--loss_type", "focal"]) == 2
    err = capsys.readouterr().err
    assert "unknown --loss_type 'focal'" in err and "valid --loss_type values: cross_entropy" in err
    assert not out.exists()


def test_bad_rows_stop_training_before_weights_load_unless_skipped(tiny_model_dir, tmp_path, capsys):
    bad = [{"query": "q", "response": ""}, {"messages": [{"role": "user", "content": "Hi"}]}]
    data = write_jsonl(tmp_path / "mixed.jsonl", ROWS * 2 + bad)
    model = str(tiny_model_dir("llama", "chatml"))
    out = tmp_path / "out"
    assert main(["sft", "--model", model, "--dataset", str(data), "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 of 10 rows are unusable (empty_content 1, missing_reply 1)" in err
    assert f"{data}:9: messages[1] (assistant): empty content" in err and "--skip_bad_rows" in err
    assert not out.exists()
    run = run_sft(model, data, out, "--max_steps", "1", "--skip_bad_rows", "true")
    assert "--skip_bad_rows: --dataset: skipped 2 of 10 rows (empty_content 1, missing_reply 1)" in capsys.readouterr().err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["bad_rows_skipped"] == 2 and manifest["num_train_rows"] == 8


def test_columns_flag_maps_a_custom_format(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "custom.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(4)])
    run = run_sft(tiny_model_dir("llama", "chatml"), data, tmp_path / "out", "--max_steps", "1",
                  "--columns", '{"question": "query", "answer": "response"}')
    assert json.loads((run / "manifest.json").read_text())["num_train_rows"] == 4
