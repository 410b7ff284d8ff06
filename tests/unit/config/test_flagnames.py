"""Aliases and refused flags: declared once, taken the same way on the command line, in YAML and by the
Python API, shown in --help, and listed exactly in docs/flags.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import swiftkit
from swiftkit.cli.args import build_parser, config_and_host, host_selection, plugin_selection
from swiftkit.cli.flagdoc import MSSWIFT, _status, msswift_flags, refused_table, render
from swiftkit.cli.main import main
from swiftkit.commands import COMMANDS, build_host, config_from_values
from swiftkit.config import CONFIGS, PluginArgs, RlhfConfig, SftConfig
from swiftkit.config.flagnames import REFUSED, canonical_keys, field_aliases, flag_status, given_value
from swiftkit.config.plugin_fields import PluginField
from swiftkit.core.errors import ConfigError

DOC = Path(__file__).resolve().parents[3] / "docs" / "flags.md"
BASE = ["--model", "m", "--dataset", "a.jsonl"]


def parse(argv, command="sft"):
    return config_and_host(COMMANDS[command], argv)[0]


def api_config(command="sft", **values):
    """The config the Python API builds for ``swiftkit.<command>(**values)`` (without running it)."""
    return config_from_values(COMMANDS[command], build_host(), values, source="argument")


# -- the docs page -------------------------------------------------------------------------------


def test_docs_flags_page_is_generated_from_the_code():
    assert DOC.read_text() == render(), "docs/flags.md is stale: run `python -m swiftkit.cli.flagdoc > docs/flags.md`"


def _table(section: str) -> list[list[str]]:
    text = DOC.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_docs_list_exactly_the_aliases_the_fields_declare():
    documented = {(row[0].strip("`"), row[1].strip("`")) for row in _table("Aliases")}
    declared = {(f"--{alias}", f"--{name}") for cfg in CONFIGS for alias, name in field_aliases(cfg).items()}
    assert documented == declared
    for alias in ("tuner_type", "external_plugins", "evaluation_strategy", "eval_metric", "loss_weights", "epsilon"):
        assert any(a == f"--{alias}" for a, _ in documented)


def test_docs_list_exactly_the_refusals_with_their_reasons():
    documented = {row[0].strip("`"): row[2].replace("\\|", "|") for row in _table("Why a flag is refused")}
    assert documented == {f"--{flag}": reason for flag, reason in REFUSED.items()}


@pytest.mark.parametrize("command", sorted(MSSWIFT))
def test_every_ms_swift_flag_on_the_page_is_taken_renamed_or_refused(command):
    cfg_cls = MSSWIFT[command][1]
    unknown = [flag for flag in msswift_flags(command) if flag_status(cfg_cls, flag)[0] == "unknown"]
    assert not unknown, f"`swiftkit {command}` neither takes nor refuses: {unknown}"
    assert all(_status(cfg_cls, flag) == flag_status(cfg_cls, flag) for flag in msswift_flags(command))


def test_every_refusal_applies_to_some_command():
    assert [flag for flag, commands in refused_table() if not commands] == []


def test_sft_page_links_the_table():
    assert "(flags.md)" in (DOC.parent / "sft.md").read_text()


# -- definitions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.command)
def test_no_alias_is_a_field_name_or_declared_twice(cfg):
    fields = cfg.flat_fields()
    seen: dict[str, str] = {}
    for _g, gcls in cfg.groups():
        for f in gcls.__dataclass_fields__.values():
            for alias in f.metadata.get("aliases", ()):
                assert alias not in fields, f"--{alias} is a field of `{cfg.command}` and an alias of --{f.name}"
                assert alias not in seen, f"--{alias} names both --{seen[alias]} and --{f.name}"
                seen[alias] = f.name


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.command)
def test_a_refused_name_that_is_a_field_is_taken_as_the_field(cfg):
    fields = cfg.flat_fields()
    both = [flag for flag in REFUSED if flag in fields]
    if cfg is SftConfig:
        assert {"seed", "dataset", "packing", "padding_free"} <= set(both)  # refused by infer/export/deploy
    for flag in both:
        assert flag_status(cfg, flag) == ("accepted", None)
        assert canonical_keys(cfg, {flag: 1}, "flag") == {flag: 1}


def test_every_refusal_is_one_line_of_reasonable_length():
    for flag, reason in REFUSED.items():
        assert "\n" not in reason and 20 < len(reason) < 240, flag


def test_a_plugin_flag_named_like_a_refused_one_is_the_plugins():
    field = PluginField("use_logits_to_keep", bool, False, "a plugin's head switch", plugin="p")
    cfg = SftConfig.from_flat({"model": "m", "dataset": ["a"], "use_logits_to_keep": True}, source="flag",
                              plugin_fields={"use_logits_to_keep": field})
    assert cfg.plugin_options == {"use_logits_to_keep": True}


# -- refused flags: command line, YAML, API ------------------------------------------------------


def test_refused_flag_on_the_command_line_is_one_line_naming_the_reason(capsys, tmp_path):
    rc = main(["sft", *BASE, "--output_dir", str(tmp_path / "out"), "--zero_hpz_partition_size", "8"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert err.endswith("--zero_hpz_partition_size is not supported by `swiftkit sft`: "
                        + REFUSED["zero_hpz_partition_size"])
    assert "unrecognized" not in err and not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="--zero_hpz_partition_size is not supported"):
        parse([*BASE, "--zero_hpz_partition_size=8"])


def test_refused_flag_in_yaml_and_in_the_api(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("model: m\ndataset: a.jsonl\nuse_logits_to_keep: true\n")
    with pytest.raises(ConfigError, match=r"^--use_logits_to_keep is not supported by `swiftkit sft`: the LM head"):
        parse([str(yaml_file)])
    with pytest.raises(ConfigError, match=r"^--deepspeed_autotp_size is not supported by `swiftkit sft`: DeepSpeed "
                                          "AutoTP"):
        api_config(model="m", dataset="a", deepspeed_autotp_size=2)
    with pytest.raises(ConfigError, match=r"^--deepspeed_autotp_size is not supported"):
        swiftkit.sft(model="m", dataset="a", deepspeed_autotp_size=2)  # before anything loads


def test_a_flag_refused_by_one_command_is_taken_by_another():
    assert parse([*BASE, "--seed", "7"]).training.seed == 7
    with pytest.raises(ConfigError, match=r"--seed is not supported by `swiftkit infer`: .*--data_seed"):
        parse(["--model", "m", "--seed", "7"], command="infer")


# -- aliases: command line, YAML, API, --help ----------------------------------------------------


def test_tuner_type_on_the_command_line_in_yaml_and_in_the_api(tmp_path):
    cli = parse([*BASE, "--tuner_type", "full"])
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("model: m\ndataset: a.jsonl\ntuner_type: freeze\n")
    from_yaml = parse([str(yaml_file)])
    from_api = api_config(model="m", dataset="a", tuner_type="full")
    assert cli.tuner.train_type == "full" and from_yaml.tuner.train_type == "freeze"
    assert from_api.tuner.train_type == "full"
    for cfg in (cli, from_yaml, from_api):  # the config and args.json record swiftkit's name
        assert cfg.is_given("train_type") and not cfg.is_given("tuner_type")
        assert "tuner_type" not in cfg.to_flat()
    assert parse([*BASE, "--tuner_type", "full"], command="rlhf").tuner.train_type == "full"


def test_an_alias_and_its_field_together_are_an_error(tmp_path):
    for argv in (["--tuner_type", "full", "--train_type", "lora"], ["--train_type=lora", "--tuner_type=full"]):
        with pytest.raises(ConfigError, match="'--tuner_type' is another name of '--train_type'; give only one"):
            parse([*BASE, *argv])
    with pytest.raises(ConfigError, match="'tuner_type' is another name of 'train_type'; give only one"):
        api_config(model="m", dataset="a", tuner_type="full", train_type="lora")
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("model: m\ndataset: a.jsonl\nevaluation_strategy: 'no'\neval_strategy: 'no'\n")
    with pytest.raises(ConfigError, match="key in .*c.yaml 'evaluation_strategy' is another name of 'eval_strategy'"):
        parse([str(yaml_file)])
    with pytest.raises(ConfigError, match="'loss_weights' is another name of 'dpo_loss_weights'"):
        api_config("rlhf", model="m", dataset="a", loss_weights=[1.0], dpo_loss_weights=[1.0])


def test_help_shows_each_alias_beside_its_flag():
    sft_help = " ".join(build_parser(SftConfig).format_help().split())
    assert "--train_type TRAIN_TYPE, --tuner_type TRAIN_TYPE" in sft_help
    assert "--plugins PLUGINS [PLUGINS ...], --external_plugins PLUGINS [PLUGINS ...]" in sft_help
    assert "--eval_strategy {steps,epoch,no}, --evaluation_strategy {steps,epoch,no}" in sft_help
    rlhf_help = " ".join(build_parser(RlhfConfig).format_help().split())
    assert "--cliprange CLIPRANGE, --epsilon CLIPRANGE" in rlhf_help


PLUGIN = '''
import swiftkit
from swiftkit.config.plugin_fields import PluginField

@swiftkit.hookimpl
def swiftkit_add_config_fields(command):
    return [PluginField("loaded_flag", str, "", "Present only when this file is loaded.")]
'''


@pytest.mark.parametrize("alias", ["external_plugins", "custom_register_path"])
def test_external_plugins_loads_the_file_from_flags_yaml_and_the_api(tmp_path, alias):
    plugin = tmp_path / "plug.py"
    plugin.write_text(PLUGIN)
    cli = parse([*BASE, f"--{alias}", str(plugin), "--loaded_flag", "cli"])
    assert cli.plugin_options == {"loaded_flag": "cli"} and cli.plugin.plugins == [str(plugin)]
    assert plugin_selection([f"--{alias}", str(plugin)])[0] == [str(plugin)]

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(f"model: m\ndataset: a.jsonl\n{alias}: [{plugin}]\nloaded_flag: yaml\n")
    assert parse([str(yaml_file)]).plugin_options == {"loaded_flag": "yaml"}
    assert host_selection([], {alias: [str(plugin)]})[0] == [str(plugin)]

    assert given_value({alias: [str(plugin)]}, PluginArgs, "plugins") == [str(plugin)]
    # The API loads the file before parsing: with it, the plugin's flag is known and the error is the
    # missing --model; without it, the flag itself would be unknown.
    with pytest.raises(ConfigError, match="needs --model"):
        swiftkit.sft(dataset="a", loaded_flag="api", **{alias: [str(plugin)]})
    with pytest.raises(ConfigError, match="unknown argument 'loaded_flag'"):
        swiftkit.sft(dataset="a", loaded_flag="api")
