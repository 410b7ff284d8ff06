"""Form fields from the command configs, and form values back into a command line, YAML and errors."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hosts import builtin_host

from swiftkit.cli.args import build_parser, config_and_host
from swiftkit.commands import COMMANDS, plugin_fields
from swiftkit.config.files import load_yaml_config
from swiftkit.core.errors import ConfigError
from swiftkit.webui import forms

RECIPE_COMMANDS = [name for name, c in COMMANDS.items() if c.config is not None]

PLUGIN_WITH_FIELDS = '''
import swiftkit
from swiftkit.config.plugin_fields import PluginField

@swiftkit.hookimpl
def swiftkit_add_config_fields(command):
    return [PluginField("focal_gamma", float, 2.0, "Focusing exponent of the focal loss.", commands=("sft",)),
            PluginField("focal_mode", str, "mean", "How focal losses are reduced.", choices=("mean", "sum"),
                        commands=("sft",))]
'''


def _words(text: str) -> str:
    """``text`` without whitespace: --help wraps lines (also after hyphens)."""
    return "".join(text.split())


def _parsed(command: str, argv: list[str]):
    """The config and host the CLI builds from ``swiftkit COMMAND ARGV``."""
    assert argv[:1 + len(command.split())] == ["swiftkit", *command.split()]
    return config_and_host(COMMANDS[command], argv[1 + len(command.split()):])


def _expected(command: str, values: dict, host) -> dict:
    """The flat config ``values`` give through the config's own from_flat."""
    cmd = COMMANDS[command]
    return cmd.config.from_flat(values, plugin_fields=plugin_fields(host, cmd)).to_flat()


@pytest.mark.parametrize("command", RECIPE_COMMANDS)
def test_field_specs_cover_every_flag_with_the_cli_default_and_help(command):
    cfg = COMMANDS[command].config
    specs = forms.field_specs(command)
    fields = cfg.flat_fields()
    assert [s.name for s in specs] == list(fields)
    help_text = _words(build_parser(cfg).format_help())  # what `swiftkit COMMAND --help` prints
    for spec in specs:
        _, f, _ = fields[spec.name]
        assert spec.default == forms.field_default(f)
        assert _words(spec.help) in help_text, spec.name
        assert spec.help.startswith(f.metadata["help"])
        assert spec.aliases == tuple(f.metadata.get("aliases", ()))
        assert spec.kind in ("bool", "int", "float", "str", "choice", "list", "dict")
    assert {s.name for s in specs if s.basic} == set(forms.BASIC_FLAGS[command])


def test_field_kinds_follow_the_field_types():
    specs = {s.name: s for s in forms.field_specs("sft")}
    assert (specs["dataset"].kind, specs["dataset"].item_kind, specs["dataset"].default) == ("list", "str", [])
    assert specs["learning_rate"].kind == "float" and specs["learning_rate"].default == 1e-4
    assert specs["lora_rank"].kind == "int" and specs["use_dora"].kind == "bool"
    assert specs["torch_dtype"].kind == "choice" and specs["torch_dtype"].choices == (
        "auto", "float32", "bfloat16", "float16")
    # A true/false flag whose default is "decided at run time" (None) is a choice, so that empty keeps None.
    assert specs["bf16"].kind == "choice" and specs["bf16"].choices == ("true", "false")
    assert specs["bf16"].default is None
    assert specs["columns"].kind == "dict" and specs["lr_scheduler_kwargs"].kind == "dict"
    assert specs["eval_strategy"].aliases == ("evaluation_strategy",)
    assert specs["model"].group == "model" and specs["learning_rate"].group == "training"
    assert specs["report_to"].help.endswith("(default: ['tensorboard'])")


def test_plugin_fields_appear_with_a_host(tmp_path):
    plugin = tmp_path / "focal.py"
    plugin.write_text(PLUGIN_WITH_FIELDS)
    host = builtin_host([str(plugin)])
    specs = {s.name: s for s in forms.field_specs("sft", host)}
    gamma, mode = specs["focal_gamma"], specs["focal_mode"]
    assert (gamma.kind, gamma.default, gamma.group) == ("float", 2.0, forms.PLUGIN_GROUP)
    assert gamma.plugin.endswith("focal.py") and f"[plugin {gamma.plugin}]" in gamma.help
    assert (mode.kind, mode.choices) == ("choice", ("mean", "sum"))
    cli_help = _words(build_parser(COMMANDS["sft"].config, plugin_fields(host, COMMANDS["sft"])).format_help())
    assert _words(gamma.help) in cli_help and _words(mode.help) in cli_help
    assert "focal_gamma" not in {s.name for s in forms.field_specs("infer", host)}
    assert "focal_gamma" not in {s.name for s in forms.field_specs("sft")}  # no host: built-in flags only

    values = {"model": "m", "dataset": "d.jsonl", "plugins": str(plugin), "focal_gamma": "0.5", "focal_mode": "sum"}
    assert forms.clean_values("sft", values, host)["focal_gamma"] == 0.5
    assert forms.validate("sft", values, host) == {}
    assert "focal_mode" in forms.validate("sft", {**values, "focal_mode": "max"}, host)
    cfg, parsed_host = _parsed("sft", forms.command_argv("sft", values, host))
    assert cfg.plugin_options == {"focal_gamma": 0.5, "focal_mode": "sum"}
    assert cfg.to_flat() == _expected("sft", forms.clean_values("sft", values, host), parsed_host)


def test_clean_values_types_text_and_drops_empty_and_default_values(tmp_path):
    raw = {"model": "m", "dataset": 'a.jsonl "my data.jsonl"', "learning_rate": "1e-5", "lora_rank": "16.0",
           "max_steps": "", "use_dora": False, "bf16": "true", "fp16": None, "output_dir": "output", "seed": 42.0,
           "columns": {"q": "query"}, "tuner_type": "full", "val_dataset": [], "system": "  "}
    cleaned = forms.clean_values("sft", raw)
    assert cleaned == {"model": "m", "dataset": ["a.jsonl", "my data.jsonl"], "learning_rate": 1e-5, "lora_rank": 16,
                       "bf16": True, "columns": '{"q": "query"}', "train_type": "full"}
    assert forms.clean_values("sft", cleaned) == cleaned
    assert forms.clean_values("sft", {"dataset": [tmp_path / "a.jsonl"], "output_dir": tmp_path}) == {
        "dataset": [str(tmp_path / "a.jsonl")], "output_dir": str(tmp_path)}
    # A value the flag cannot take stays as given, for validate to report.
    assert forms.clean_values("sft", {"lora_rank": "many"}) == {"lora_rank": "many"}


def test_validate_puts_each_message_on_its_flag():
    base = {"model": "m", "dataset": "d.jsonl"}
    assert forms.validate("sft", base) == {}
    errors = forms.validate("sft", {**base, "learning_rate": "-1"})
    assert list(errors) == ["learning_rate"] and "--learning_rate must be > 0" in errors["learning_rate"]
    errors = forms.validate("sft", {"dataset": "d.jsonl", "lora_rank": "many", "warmup_ratio": 1.5})
    assert set(errors) == {"lora_rank", "warmup_ratio", "model"}
    assert "must be an integer" in errors["lora_rank"] and "needs --model" in errors["model"]
    assert set(forms.validate("sft", {**base, "bf16": True, "fp16": True})) == {"bf16"}
    assert set(forms.validate("sft", {**base, "torch_dtype": "float8"})) == {"torch_dtype"}
    errors = forms.validate("sft", {**base, "eval_steps": 5, "eval_strategy": "epoch", "val_dataset": "v.jsonl"})
    assert set(errors) == {"eval_steps"}
    errors = forms.validate("sft", {**base, "learning_rat": 0.1, "zero_hpz_partition_size": 8})
    assert set(errors) == {"learning_rat", "zero_hpz_partition_size"}
    assert "(did you mean 'learning_rate'?)" in errors["learning_rat"]
    assert "goes into the --deepspeed JSON file" in errors["zero_hpz_partition_size"]
    assert set(forms.validate("sft", {**base, "deepspeed": "zero4"})) == {"deepspeed"}
    errors = forms.validate("sft", {**base, "train_type": "full", "tuner_type": "lora"})
    assert "another name of --train_type" in errors["train_type"]
    errors = forms.validate("rlhf", {**base, "rlhf_type": "grpo"})
    assert list(errors) == ["rlhf_type"] and "needs --reward_funcs" in errors["rlhf_type"]
    errors = forms.validate("quantize", {"model": "m"})
    assert list(errors) == ["quant_method"]


ROUND_TRIPS = [
    ("sft", {"model": "m", "dataset": 'a.jsonl "my data.jsonl" self-cognition#20', "learning_rate": "2e-5",
             "num_train_epochs": "0.5", "lora_rank": 4, "use_dora": True, "bf16": "false", "report_to": "none",
             "system": "-Be brief- and 'kind' \"always\" $HOME `x`", "columns": '{"q": "query", "a": "response"}',
             "lr_scheduler_kwargs": '{"min_lr_rate":0.05}', "target_modules": "q_proj v_proj",
             "model_name": "小黄 Xiao-Huang", "callbacks": "graceful_exit", "evaluation_strategy": "no",
             "max_length": 512, "padding_free": False, "save_total_limit": 2, "gradient_checkpointing": True,
             "gradient_checkpointing_kwargs": {"use_reentrant": False}}),
    ("rlhf", {"model": "m", "dataset": "pairs.jsonl", "rlhf_type": "dpo", "dpo_loss_type": "sigmoid hinge",
              "dpo_loss_weights": "1 0.5", "beta": 0.2}),
    ("rlhf", {"model": "m", "dataset": "prompts.jsonl", "rlhf_type": "grpo", "reward_funcs": ["accuracy", "format"],
              "reward_weights": [1.0, -0.5], "num_generations": 2, "per_device_train_batch_size": 2}),
    ("infer", {"adapters": "out/v0-x/checkpoint-2", "temperature": 0.0, "max_new_tokens": 16,
               "val_dataset": "v.jsonl"}),
    ("eval", {"model": "m", "eval_dataset": "gsm8k=data/gsm8k.jsonl qa", "val_dataset": "v.jsonl",
              "eval_dataset_args": '{"gsm8k": {"few_shot": 2}}'}),
    ("export", {"adapters": "run", "quant_method": "gguf", "gguf_type": "q8_0", "output_dir": "out/gguf"}),
    ("deploy", {"model": "m", "adapters": "a=run1 b=run2", "port": 8001, "host": "0.0.0.0"}),
    ("data lint", {"dataset": "rows.jsonl", "max_problems": 5}),
]


@pytest.mark.parametrize(("command", "values"), ROUND_TRIPS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(ROUND_TRIPS)])
def test_command_line_parses_back_to_the_same_config(command, values):
    cleaned = forms.clean_values(command, values)
    assert forms.validate(command, values) == {}
    argv = forms.command_argv(command, values)
    line = forms.command_line(command, values)
    # A real shell splits the line into exactly these arguments.
    shell = subprocess.run(["bash", "-c", "printf '%s\\0' " + line], capture_output=True, text=True, check=True)
    assert shell.stdout.split("\0")[:-1] == argv
    cfg, host = _parsed(command, argv)
    assert cfg.to_flat() == _expected(command, cleaned, host)
    assert cfg.given == frozenset(cleaned)


@pytest.mark.parametrize(("command", "values"), ROUND_TRIPS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(ROUND_TRIPS)])
def test_command_yaml_loads_to_the_same_config(command, values, tmp_path):
    cleaned = forms.clean_values(command, values)
    path = tmp_path / "config.yaml"
    path.write_text(forms.command_yaml(command, values), encoding="utf-8")
    loaded = load_yaml_config(str(path))
    flags = [a[2:].split("=", 1)[0] for a in forms.command_argv(command, values) if a.startswith("--")]
    assert list(loaded) == flags  # the same flags, in --help order
    cfg, host = config_and_host(COMMANDS[command], [str(path)])
    assert cfg.to_flat() == _expected(command, cleaned, host)
    assert forms.clean_values(command, loaded) == cleaned


def test_yaml_writes_json_objects_as_mappings_when_they_read_back_the_same():
    text = forms.command_yaml("sft", {"model": "m", "dataset": "d", "columns": '{"q": "query"}',
                                      "lr_scheduler_kwargs": '{"min_lr_rate":0.05}'})
    assert "columns: {q: query}" in text
    assert "lr_scheduler_kwargs: '{\"min_lr_rate\":0.05}'" in text  # a mapping would come back as other text
    assert text.startswith("# swiftkit sft config")


def test_command_argv_order_values_and_refusals():
    argv = forms.command_argv("sft", {"learning_rate": 1e-4, "dataset": ["-weird.jsonl"], "model": "m",
                                      "use_dora": "yes", "seed": 7})
    # --help order; the default learning rate dropped; a lone item starting with '-' is written with '='.
    assert argv == ["swiftkit", "sft", "--model", "m", "--dataset=-weird.jsonl", "--use_dora", "true", "--seed", "7"]
    cfg, _ = _parsed("sft", argv)
    assert cfg.data.dataset == ["-weird.jsonl"] and cfg.tuner.use_dora is True
    with pytest.raises(ConfigError, match="'-b.jsonl' starts with '-'"):
        forms.command_argv("sft", {"model": "m", "dataset": ["a.jsonl", "-b.jsonl"]})
    assert forms.command_argv("data preview", {"dataset": "d", "model": "m"})[:3] == ["swiftkit", "data", "preview"]
    with pytest.raises(ValueError, match="not a command with flags"):
        forms.field_specs("list")


def test_flag_of_names_the_first_known_flag():
    names = {"model": "model", "dataset": "dataset", "evaluation_strategy": "eval_strategy"}
    assert forms.flag_of("`swiftkit sft` needs --dataset (or --model)", names) == "dataset"
    assert forms.flag_of("--evaluation_strategy is wrong", names) == "eval_strategy"
    assert forms.flag_of("--nothing here --model x", names) == "model"
    assert forms.flag_of("no flag at all", names) == ""
    assert shlex.split(forms.command_line("sft", {"system": "it's"}))[-1] == "it's"
