"""Plugins in real runs: a --plugins file is imported once per command, its template, model type and
dataset reach `data preview`, `sft` and `infer`, and plugin failures (a NaN loss, an exception in a
loss or a callback) stop the run with one line naming the plugin, leaving no bad checkpoint and no
half-made run folder."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file
from test_sft_cli import ROWS, write_jsonl

from swiftkit.cli.main import main

PLUGIN_FAMILY = '''
import swiftkit
from swiftkit.data.registry import DatasetEntry
from swiftkit.models.registry import ModelEntry
from swiftkit.templates.registry import TemplateEntry

TEMPLATE = (
    "{% for m in messages %}<<{{ m['role'] }}>> {{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}<|im_end|>{% endif %}\\n{% endfor %}"
    "{% if add_generation_prompt %}<<assistant>> {% endif %}"
)

@swiftkit.hookimpl
def swiftkit_register_templates(registry):
    registry.register("plug-fmt", TemplateEntry(name="plug-fmt", chat_template=TEMPLATE, stop_words=["<|im_end|>"]))

@swiftkit.hookimpl
def swiftkit_register_models(registry):
    registry.register("plug-tiny", ModelEntry(name="plug-tiny", type="plugfam", model_type="llama",
                                              architectures=["LlamaForCausalLM"], template="plug-fmt",
                                              hf_id="plugin-tests/plug-tiny"))

@swiftkit.hookimpl
def swiftkit_register_datasets(registry):
    registry.register("plug-data", DatasetEntry(name="plug-data", path=DATA, tags=["sft"]))
'''


def plugin_file(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_a_plugins_template_model_type_and_dataset_reach_preview_sft_and_infer(tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "rows.jsonl", ROWS * 2)
    plugin = plugin_file(tmp_path, "family.py", f"DATA = {str(data)!r}\n" + PLUGIN_FAMILY)
    model = str(tiny_model_dir("llama", None))  # a tokenizer without a chat template
    common = ["--plugins", str(plugin), "--model", model, "--model_type", "plugfam"]

    assert main(["data", "preview", "--dataset", "plug-data", *common]) == 0
    out = capsys.readouterr().out
    assert "template plug-fmt" in out and "<<user>> Hello!" in out and "[[Hi, how can I help?<|im_end|>]]" in out

    assert main(["sft", "--dataset", "plug-data", *common, "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
                 "--report_to", "none"]) == 0
    run = next((tmp_path / "out").glob("v*-*"))
    args = json.loads((run / "args.json").read_text())
    assert args["template_name"] == "plug-fmt" and args["plan"]["model_type"] == "llama"
    assert args["plugins"] == [str(plugin)] and "model_type" in args["flags_given"]

    ckpt = run / "checkpoint-1"
    saved = json.loads((ckpt / "tokenizer_config.json").read_text()).get("chat_template") or \
        (ckpt / "chat_template.jinja").read_text()
    assert "<<assistant>>" in saved  # the checkpoint serves with the plugin's template

    result = tmp_path / "preds.jsonl"
    assert main(["infer", "--plugins", str(plugin), "--adapters", str(run), "--val_dataset", "plug-data",
                 "--max_new_tokens", "3", "--result_path", str(result)]) == 0
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    assert len(rows) == len(ROWS) * 2 and rows[0]["messages"][0]["content"] == "Hello!"


def test_a_plugins_file_is_imported_once_per_command(tiny_model_dir, tmp_path):
    marks = tmp_path / "imports.txt"
    plugin = plugin_file(tmp_path, "counted.py", f'''
        import swiftkit
        from swiftkit.config.plugin_fields import PluginField
        with open({str(marks)!r}, "a") as fh:
            fh.write("x")

        @swiftkit.hookimpl
        def swiftkit_add_config_fields(command):
            return [PluginField("counted_flag", int, 1, "A flag, so parsing asks this plugin too.")]
    ''')
    data = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    assert main(["sft", "--plugins", str(plugin), "--model", str(tiny_model_dir("llama", "chatml")),
                 "--dataset", str(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
                 "--report_to", "none", "--counted_flag", "2"]) == 0
    assert marks.read_text() == "x"


NAN_LOSS = '''
import swiftkit

calls = []

def after_two_steps(outputs, labels, num_items_in_batch=None):
    calls.append(1)
    logits = outputs.logits[:, :-1].float()
    loss = logits.logsumexp(-1).mean() - logits.mean()
    return loss * float("nan") if len(calls) > STEPS_OK else loss

@swiftkit.hookimpl
def swiftkit_get_loss(name, config):
    return after_two_steps if name == "nan-later" else None

@swiftkit.hookimpl
def swiftkit_choice_names(kind):
    return ["nan-later"] if kind == "loss" else []
'''


def test_a_nan_plugin_loss_stops_at_step_1_with_one_line_and_leaves_no_run(tiny_model_dir, tmp_path, capsys):
    plugin = plugin_file(tmp_path, "nan_loss.py", "STEPS_OK = 0\n" + NAN_LOSS)
    data = write_jsonl(tmp_path / "rows.jsonl", ROWS * 2)
    out = tmp_path / "out"
    code = main(["sft", "--plugins", str(plugin), "--loss_type", "nan-later", "--model",
                 str(tiny_model_dir("llama", "chatml")), "--dataset", str(data), "--output_dir", str(out),
                 "--max_steps", "3", "--save_steps", "1", "--report_to", "none"])
    err = capsys.readouterr().err
    assert code == 2
    assert last_line(err) == (
        f"swiftkit sft: error: the loss is nan at step 1 (loss: --loss_type nan-later from plugin 'file:{plugin}' "
        f"(file {plugin})); training stopped before that step's update, so the checkpoints saved so far are intact")
    assert "Traceback" not in err
    assert not out.exists()  # failed before its first step: no half-made run folder


def test_a_nan_loss_later_keeps_the_good_checkpoints(tiny_model_dir, tmp_path, capsys):
    plugin = plugin_file(tmp_path, "nan_loss.py", "STEPS_OK = 2\n" + NAN_LOSS)
    data = write_jsonl(tmp_path / "rows.jsonl", ROWS * 2)
    out = tmp_path / "out"
    assert main(["sft", "--plugins", str(plugin), "--loss_type", "nan-later", "--model",
                 str(tiny_model_dir("llama", "chatml")), "--dataset", str(data), "--output_dir", str(out),
                 "--max_steps", "4", "--save_steps", "1", "--report_to", "none"]) == 2
    assert "the loss is nan at step 3" in last_line(capsys.readouterr().err)
    run = next(out.glob("v*-*"))
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    weights = load_file(run / "checkpoint-2" / "adapter_model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_an_exception_in_a_plugin_loss_or_callback_is_one_line_naming_the_plugin(tiny_model_dir, tmp_path, capsys):
    plugin = plugin_file(tmp_path, "raising.py", '''
        import swiftkit
        from transformers import TrainerCallback

        def broken_loss(outputs, labels, num_items_in_batch=None):
            raise KeyError("logits_of_doom")

        class Broken(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                raise RuntimeError("cannot reach the tracking server")

        @swiftkit.hookimpl
        def swiftkit_get_loss(name, config):
            return broken_loss if name == "broken" else None

        @swiftkit.hookimpl
        def swiftkit_get_callback(name, config):
            return Broken() if name == "tracker" else None

        @swiftkit.hookimpl
        def swiftkit_choice_names(kind):
            return {"loss": ["broken"], "callback": ["tracker"]}.get(kind, [])
    ''')
    data = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    base = ["sft", "--plugins", str(plugin), "--model", str(tiny_model_dir("llama", "chatml")), "--dataset",
            str(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--report_to", "none"]
    label = f"plugin 'file:{plugin}' (file {plugin})"
    assert main([*base, "--loss_type", "broken"]) == 2
    err = capsys.readouterr().err
    assert last_line(err).startswith(f"swiftkit sft: error: {label} failed in loss 'broken': KeyError: "
                                     "'logits_of_doom'") and "Traceback" not in err
    assert main([*base, "--callbacks", "tracker"]) == 2
    err = capsys.readouterr().err
    assert last_line(err).startswith(f"swiftkit sft: error: {label} failed in callback 'tracker' (on_train_begin): "
                                     "RuntimeError: cannot reach the tracking server")
    assert not (tmp_path / "out").exists()
    assert main([*base, "--callbacks", "tracker", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err  # --debug shows where it came from


def test_unknown_optimizer_and_callback_names_fail_before_weights_load(tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    base = ["sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(data), "--output_dir",
            str(tmp_path / "out"), "--report_to", "none"]
    assert main([*base, "--optimizer", "lion"]) == 2
    assert "unknown --optimizer 'lion'" in capsys.readouterr().err
    assert main([*base, "--callbacks", "early_stp"]) == 2
    assert "unknown --callbacks 'early_stp'" in capsys.readouterr().err
    assert main([*base, "--trainer", "fancy"]) == 2
    assert "unknown --trainer 'fancy'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
