"""The CLI: help text, YAML + flag overrides, closest-flag errors, and no torch import for --help."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from swiftkit.cli.args import config_and_host
from swiftkit.cli.main import main
from swiftkit.commands import COMMANDS
from swiftkit.config import ConfigError

SWIFTKIT = [sys.executable, "-m", "swiftkit.cli.main"]



def parse(argv, command="sft"):
    """The config the CLI builds for ``swiftkit COMMAND ARGV``."""
    return config_and_host(COMMANDS[command], argv)[0]

def test_top_level_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("sft", "pt", "infer", "list"):
        assert f"  {command}" in out


def test_sft_help_shows_every_flag_with_help_and_default():
    out = subprocess.run(SWIFTKIT + ["sft", "--help"], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS["sft"].config.flat_fields():
        assert f"--{name}" in out
    assert "Peak learning rate. (default: 0.0001)" in " ".join(out.split())


# Start-up is timed as the best of a few starts: one start can be slowed by whatever else the machine does.
STARTS = 3


@pytest.mark.serial  # timed: run alone, not beside another test
def test_help_does_not_import_torch_and_is_fast():
    code = (
        "import sys, time, io, contextlib; t = time.perf_counter()\n"
        "from swiftkit.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "    try:\n        main(['sft', '--help'])\n    except SystemExit:\n        pass\n"
        "print(time.perf_counter() - t, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    times = []
    for _ in range(STARTS):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        seconds, torch_loaded, tf_loaded = out.split()
        assert torch_loaded == "False" and tf_loaded == "False"
        times.append(float(seconds))
    assert min(times) < 0.5, times


@pytest.mark.serial  # timed: run alone, not beside another test
def test_console_script_help_wall_time():
    exe = Path(sys.executable).parent / "swiftkit"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    times = []
    for _ in range(STARTS):
        start = time.perf_counter()
        subprocess.run([str(exe), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.5, times


def test_unknown_flag_names_closest(capsys):
    assert main(["sft", "--model", "m", "--dataset", "d", "--learnig_rate", "1e-4"]) == 2
    err = capsys.readouterr().err
    assert "'--learnig_rate'" in err and "did you mean '--learning_rate'" in err


def test_unknown_command_names_closest(capsys):
    assert main(["stf"]) == 2
    assert "did you mean 'sft'" in capsys.readouterr().err


def test_yaml_then_flags_override(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("model: m\ndataset: a.jsonl\nlearning_rate: 0.001\nlora_rank: 4\nuse_hf: true\n")
    cfg = parse([str(cfg_file), "--learning_rate", "1e-4", "--lora_dropout", "0.1"])
    assert cfg.training.learning_rate == 1e-4  # flag wins
    assert cfg.tuner.lora_rank == 4 and cfg.model.use_hf is True  # from YAML
    assert cfg.tuner.lora_dropout == 0.1
    assert cfg.data.dataset == ["a.jsonl"]


def test_yaml_unknown_key_names_file_and_closest(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("model: m\ndataset: a.jsonl\nlearning_rat: 0.001\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*did you mean 'learning_rate'"):
        parse([str(cfg_file)])


def test_bool_and_list_flags():
    cfg = parse(["--model", "m", "--dataset", "a", "b#10", "--use_hf", "--padding_free", "false"])
    assert cfg.model.use_hf is True and cfg.training.padding_free is False
    assert cfg.data.dataset == ["a", "b#10"]


def test_choices_are_enforced():
    with pytest.raises(ConfigError, match="argument --truncation_strategy: invalid choice: 'middle'"):
        parse(["--model", "m", "--dataset", "a", "--truncation_strategy", "middle"])


def test_stray_positional_is_an_error():
    with pytest.raises(ConfigError, match="unexpected argument 'extra'"):
        parse(["--model", "m", "--dataset", "a", "--max_steps", "1", "extra"])
    with pytest.raises(ConfigError, match="unexpected argument 'conf.txt'"):
        parse(["conf.txt", "--model", "m", "--dataset", "a"])


PLUGIN_WITH_FIELD = '''
import swiftkit
from swiftkit.config.plugin_fields import PluginField

@swiftkit.hookimpl
def swiftkit_add_config_fields(command):
    return [PluginField("focal_gamma", float, 2.0, "Focusing exponent of the focal loss.",
                        commands=("sft", "pt"))]
'''


def test_plugin_config_field_in_help_yaml_and_flags(tmp_path):
    plugin = tmp_path / "p.py"
    plugin.write_text(PLUGIN_WITH_FIELD)
    out = subprocess.run(SWIFTKIT + ["sft", "--plugins", str(plugin), "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--focal_gamma" in out and "Focusing exponent of the focal loss." in out
    infer_help = subprocess.run(SWIFTKIT + ["infer", "--plugins", str(plugin), "--help"],
                                capture_output=True, text=True, check=True).stdout
    assert "--focal_gamma" not in infer_help  # declared for sft/pt only

    cfg = parse(["--plugins", str(plugin), "--model", "m", "--dataset", "a"])
    assert cfg.plugin_options == {"focal_gamma": 2.0}
    cfg = parse(["--plugins", str(plugin), "--model", "m", "--dataset", "a",
                                   "--focal_gamma", "0.5"])
    assert cfg.plugin_options == {"focal_gamma": 0.5} and cfg.to_flat()["focal_gamma"] == 0.5
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(f"model: m\ndataset: a\nplugins: [{plugin}]\nfocal_gamma: 1\n")
    assert parse([str(yaml_file)]).plugin_options == {"focal_gamma": 1.0}
    with pytest.raises(ConfigError, match="did you mean '--focal_gamma'"):
        parse(["--plugins", str(plugin), "--model", "m", "--dataset", "a",
                                 "--focal_gama", "1"])


def test_plugin_field_clashing_with_builtin_flag_names_the_plugin(tmp_path):
    from swiftkit.core.plugins import PluginError

    plugin = tmp_path / "clash.py"
    plugin.write_text(PLUGIN_WITH_FIELD.replace('"focal_gamma"', '"learning_rate"'))
    with pytest.raises(PluginError, match=r"clash\.py.*--learning_rate"):
        parse(["--plugins", str(plugin), "--model", "m", "--dataset", "a"])


def test_dash_p_no_blocks_a_plugin():
    cfg = parse(["-p", "no:swiftkit_focal_loss", "--model", "m", "--dataset", "a"])
    assert cfg.plugin.disable_plugins == ["swiftkit_focal_loss"]
    with pytest.raises(ConfigError, match="no:NAME"):
        parse(["-p", "something", "--model", "m", "--dataset", "a"])


def test_p_no_name_works_on_every_command(tmp_path, capsys):
    assert main(["list", "templates", "-p", "no:swiftkit.templates.plugin"]) == 0
    assert capsys.readouterr().out.strip().endswith("# 0 templates")
    data = tmp_path / "rows.jsonl"
    data.write_text('{"query": "q", "response": "r"}\n')
    assert main(["data", "lint", "--dataset", str(data), "-p", "no:swiftkit.data.plugin"]) == 0
    assert main(["data", "lint", "--dataset", "self-cognition", "-p", "no:swiftkit.data.plugin"]) == 2
    assert "is not a file, a folder, a registered dataset" in capsys.readouterr().err
    cfg = parse(["-p", "no:swiftkit.evaluate.plugin", "--adapters", "x", "--val_dataset", "v"], command="eval")
    assert cfg.plugin.disable_plugins == ["swiftkit.evaluate.plugin"]
    assert main(["eval", "--adapters", "x", "--val_dataset", "v", "-p", "no:swiftkit.evaluate.plugin"]) == 2
    assert "unknown --eval_dataset 'qa'" in capsys.readouterr().err  # the built-in benchmark is gone


def test_a_user_error_is_one_line_and_debug_adds_the_traceback(capsys):
    assert main(["sft", "--model", "m", "--dataset", "d", "--lora_rank", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "swiftkit sft: error: --lora_rank must be > 0\n"
    assert main(["sft", "--model", "m", "--dataset", "d", "--lora_rank", "0", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith("swiftkit sft: error: --lora_rank must be > 0\n")
