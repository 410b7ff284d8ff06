"""The command table: every recipe command has a config and a sibling recipe meeting the protocol."""

from __future__ import annotations

import inspect
import subprocess
import sys

from swiftkit.cli.main import TOOLS
from swiftkit.commands import COMMANDS
from swiftkit.recipes.base import Recipe

RECIPES = {c.recipe for c in COMMANDS.values() if not c.is_tool}


def test_every_recipe_meets_the_protocol_and_takes_config_and_host():
    for recipe in RECIPES:
        assert issubclass(recipe, Recipe), recipe
        assert list(inspect.signature(recipe.__init__).parameters)[1:3] == ["config", "host"], recipe


def test_no_recipe_inherits_another():
    for recipe in RECIPES:
        assert not [base for base in recipe.__mro__[1:] if base in RECIPES], recipe


def test_tool_commands_are_the_clis_tools_and_every_command_has_one_help_text():
    assert {name for name, c in COMMANDS.items() if c.is_tool} == set(TOOLS)
    for command in COMMANDS.values():
        assert command.help and command.help.endswith(".") and "\n" not in command.help
        assert (command.config is None) == command.is_tool


def test_the_table_imports_no_recipe_config_or_plugin_until_a_command_is_used():
    code = ("import sys\nfrom swiftkit.cli.main import main\nmain(['--help'])\n"
            "print(sorted(m for m in sys.modules if m.startswith(('swiftkit.recipes', 'swiftkit.train', "
            "'swiftkit.evaluate', 'swiftkit.models.plugin'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
