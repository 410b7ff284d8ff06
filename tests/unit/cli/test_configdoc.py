"""The config and entry reference in docs/ is generated from the configs and entry types and is up to date."""

from pathlib import Path

from swiftkit.cli import configdoc
from swiftkit.commands import COMMANDS

PAGE = Path(__file__).resolve().parents[3] / "docs" / "reference" / "config.md"


def test_config_reference_is_fresh():
    assert PAGE.read_text(encoding="utf-8") == configdoc.render(), (
        "docs/reference/config.md is stale: run `python -m swiftkit.cli.configdoc > docs/reference/config.md`"
    )


def test_every_flag_of_every_command_is_in_the_reference():
    text = PAGE.read_text(encoding="utf-8")
    for command in COMMANDS.values():
        if command.config is not None:
            for name in command.config.flat_fields():
                assert f"| `--{name}` |" in text, f"{command.name} --{name}"
