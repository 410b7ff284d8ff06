"""Config values of the wrong type, from a YAML file, a flag or the Python API: one line naming the
flag, the value and the expected type, exit status 2, no traceback, for every command."""

from __future__ import annotations

import subprocess
import sys

import pytest

import swiftkit
from swiftkit.cli.main import main
from swiftkit.core.errors import ConfigError

GOOD_ROW = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with a data file, the current directory of the test."""
    (tmp_path / "d.jsonl").write_text(GOOD_ROW)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    """``(exit status, stderr lines)`` of ``swiftkit ARGV`` run in this process."""
    code = main(argv)
    return code, capsys.readouterr().err.splitlines()


def one_line_error(argv: list[str], capsys) -> str:
    code, err = run_cli(argv, capsys)
    assert code == 2, err
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def yaml_file(workdir, body: str) -> str:
    path = workdir / "config.yaml"
    path.write_text(body, encoding="utf-8")
    return str(path)


# YAML value -> the message it gives (flag, value and expected type), under `swiftkit sft`
SFT_YAML = {
    "learning_rate: [1, 2]": "--learning_rate must be a number, got [1, 2]",
    "num_train_epochs: abc": "--num_train_epochs must be a number, got 'abc'",
    "lora_rank: 1.5": "--lora_rank must be an integer, got 1.5",
    "lora_rank: true": "--lora_rank must be an integer, got true",
    "dataset: {a: 1}": "--dataset must be a string or a list of strings, got {'a': 1}",
    "max_steps: {a: {b: 1}}": "--max_steps must be an integer, got {'a': {'b': 1}}",
    "learning_rate: null": "--learning_rate must be a number, got null",
    "dataset: null": "--dataset must be a string or a list of strings, got null",
    "model: [a, b]": "--model must be a string or null, got ['a', 'b']",
    "template: {name: x}": "--template must be a string or null, got {'name': 'x'}",
    "use_hf: maybe": "--use_hf must be true or false, got 'maybe'",
    "torch_dtype: float64": "--torch_dtype must be one of auto, float32, bfloat16, float16, got 'float64'",
    "target_modules: [q_proj, [v_proj]]": "--target_modules[1] must be a string, got ['v_proj']",
    "save_total_limit: 2.5": "--save_total_limit must be an integer or null, got 2.5",
    "learning_rate: .nan": "--learning_rate must be a finite number, got nan",
    "num_train_epochs: .inf": "--num_train_epochs must be a finite number, got inf",
    "max_row_bytes: -1": "--max_row_bytes must be >= 0",
    "plugins: {a: 1}": "--plugins must be a string or a list of strings, got {'a': 1}",
}


@pytest.mark.parametrize("line", list(SFT_YAML))
def test_yaml_value_of_the_wrong_type_is_one_line(workdir, capsys, line):
    config = yaml_file(workdir, f"model: m\ndataset: d.jsonl\n{line}\n")
    assert one_line_error(["sft", config], capsys).startswith(f"swiftkit sft: error: {SFT_YAML[line]}")


# every command: a YAML value of the wrong type for one of its own fields
PER_COMMAND = [
    ("sft", "lora_alpha: [8]", "--lora_alpha must be an integer, got [8]"),
    ("pt", "max_length: null", "--max_length must be an integer, got null"),
    ("rlhf", "beta: {a: 1}", "--beta must be a number or null, got {'a': 1}"),
    ("infer", "max_new_tokens: lots", "--max_new_tokens must be an integer, got 'lots'"),
    ("eval", "eval_limit: 1.5", "--eval_limit must be an integer or null, got 1.5"),
    ("export", "merge_lora: {a: 1}", "--merge_lora must be true or false, got {'a': 1}"),
    ("deploy", "port: [80]", "--port must be an integer, got [80]"),
    ("data lint", "max_problems: many", "--max_problems must be an integer, got 'many'"),
    ("data preview", "index: [1, 2]", "--index must be an integer, got [1, 2]"),
]


@pytest.mark.parametrize(("command", "line", "message"), PER_COMMAND, ids=[c for c, _, _ in PER_COMMAND])
def test_every_command_names_flag_value_and_type(workdir, capsys, command, line, message):
    config = yaml_file(workdir, f"model: m\n{line}\n")
    assert one_line_error([*command.split(), config], capsys) == f"swiftkit {command}: error: {message}"


FLAGS = {
    ("--lora_rank", "1.5"): "argument --lora_rank: invalid int value: '1.5'",
    ("--learning_rate", "abc"): "argument --learning_rate: invalid float value: 'abc'",
    ("--learning_rate", "nan"): "--learning_rate must be a finite number, got nan",
    ("--use_hf", "maybe"): "argument --use_hf: expected true/false, got 'maybe'",
    ("--torch_dtype", "float64"): "argument --torch_dtype: invalid choice: 'float64'",
    ("--max_row_bytes", "1MB"): "argument --max_row_bytes: invalid int value: '1MB'",
    ("--lora_rank",): "argument --lora_rank: expected one argument",
}


@pytest.mark.parametrize("flag", list(FLAGS), ids=lambda f: " ".join(f))
def test_flag_of_the_wrong_type_is_one_line(workdir, capsys, flag):
    line = one_line_error(["sft", "--model", "m", "--dataset", "d.jsonl", *flag], capsys)
    assert line.startswith(f"swiftkit sft: error: {FLAGS[flag]}")


def test_the_console_script_prints_no_traceback(workdir):
    config = yaml_file(workdir, "model: m\ndataset: d.jsonl\nlearning_rate: [1, 2]\n")
    for argv in (["sft", config], ["sft", "--model", "m", "--dataset", "d.jsonl", "--lora_rank", "x"]):
        done = subprocess.run([sys.executable, "-m", "swiftkit.cli.main", *argv], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.splitlines()) == 1 and "--" in done.stderr, done.stderr


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"learning_rate": [1, 2]}, "argument 'learning_rate' must be a number, got [1, 2]"),
    ({"lora_rank": True}, "argument 'lora_rank' must be an integer, got true"),
    ({"dataset": {"a": 1}}, "argument 'dataset' must be a string or a list of strings, got {'a': 1}"),
    ({"max_steps": {"a": {"b": 1}}}, "argument 'max_steps' must be an integer, got {'a': {'b': 1}}"),
    ({"learning_rate": None}, "argument 'learning_rate' must be a number, got null"),
])
def test_python_api_names_the_argument(workdir, kwargs, message):
    with pytest.raises(ConfigError) as info:
        swiftkit.sft(**{"model": "m", "dataset": "d.jsonl", **kwargs})
    assert str(info.value) == message


def test_python_api_checks_every_command(workdir):
    for func, kwargs in ((swiftkit.infer, {"model": "m", "temperature": "hot"}),
                         (swiftkit.deploy, {"model": "m", "port": 1.5}),
                         (swiftkit.export, {"adapters": "a", "merge_lora": "perhaps"})):
        with pytest.raises(ConfigError, match="must be"):
            func(**kwargs)


def test_yaml_forms_the_command_line_accepts(workdir):
    """What argparse reads from text is read from YAML too: 1e-4 (a string to YAML), "8", a mapping
    for the JSON-object flags."""
    from swiftkit.cli.args import config_and_host
    from swiftkit.commands import COMMANDS

    config = yaml_file(workdir, "model: m\ndataset: d.jsonl\nlearning_rate: 1e-4\nlora_rank: '16'\n"
                                "columns: {q: query, a: response}\nuse_hf: 'yes'\nmax_steps: 3.0\n")
    cfg, _ = config_and_host(COMMANDS["sft"], [config])
    assert cfg.training.learning_rate == 1e-4 and cfg.tuner.lora_rank == 16 and cfg.model.use_hf is True
    assert cfg.training.max_steps == 3 and cfg.data.column_map == {"q": "query", "a": "response"}


def test_deeply_nested_yaml_is_one_line(workdir, capsys):
    depth = 10_000
    config = yaml_file(workdir, f"model: m\ndataset: d.jsonl\nmax_steps: {'[' * depth}{']' * depth}\n")
    line = one_line_error(["sft", config], capsys)
    assert line.startswith(f"swiftkit sft: error: config file {config!r} is nested too deeply to read")


def test_deeply_nested_json_flag_is_one_line(workdir, capsys):
    depth = 10_000
    line = one_line_error(["sft", "--model", "m", "--dataset", "d.jsonl", "--columns", "[" * depth + "]" * depth],
                          capsys)
    assert line.startswith("swiftkit sft: error: --columns is nested too deeply to parse")


@pytest.mark.parametrize(("body", "message"), [
    ("1: 2\n", "key 1 is not a flag name"),
    ("null: 2\n", "key None is not a flag name"),
    ("[a]: b\n", "is not valid YAML: while constructing a mapping"),
])
def test_yaml_keys_that_are_not_flag_names(workdir, capsys, body, message):
    config = yaml_file(workdir, f"model: m\n{body}")
    assert message in one_line_error(["sft", config], capsys)


def test_yaml_file_that_is_not_utf8(workdir, capsys):
    path = workdir / "config.yaml"
    path.write_bytes(b"model: m\xff\n")
    assert "is not UTF-8 text" in one_line_error(["sft", str(path)], capsys)
