"""Every shipped example config parses into its command's typed config; every script compiles."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

from swiftkit.cli.args import parse_config, read_yaml_values
from swiftkit.commands import COMMANDS, build_host

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _command(path: Path) -> str:
    return path.name.split("_", 1)[0]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_config_parses(path):
    command = _command(path)
    assert command in COMMANDS, f"{path.name}: name it <command>_....yaml"
    argv = [str(path)]
    cfg = parse_config(COMMANDS[command], argv, build_host(), read_yaml_values(argv))
    assert cfg.command == command


def test_there_are_examples_for_each_command():
    commands = {_command(p) for p in EXAMPLES.glob("*.yaml")}
    assert {"sft", "pt", "infer"} <= commands


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_script_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)
