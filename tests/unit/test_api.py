"""The Python API: one plain function per command, its signature the command's flags, from the one
command table the CLI uses too."""

from __future__ import annotations

import inspect
import types

import pytest

import swiftkit
import swiftkit.exporters  # noqa: F401 - packages that once shadowed the functions of the same name
import swiftkit.inference.engine  # noqa: F401
import swiftkit.serving  # noqa: F401
from swiftkit import api
from swiftkit.commands import COMMANDS
from swiftkit.config import ConfigError

API = {c.api: c for c in COMMANDS.values() if c.api}


def test_every_recipe_command_with_an_api_name_is_a_function_of_swiftkit():
    assert set(API) == {"sft", "pt", "rlhf", "infer", "eval", "export", "quantize", "deploy"}
    for name in API:
        func = getattr(swiftkit, name)
        assert isinstance(func, types.FunctionType) and func is getattr(api, name)


def test_signature_lists_every_flag_with_its_default_after_importing_the_packages():
    sig = inspect.signature(swiftkit.infer)
    params = sig.parameters
    assert list(params)[0] == "config" and params["config"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert params["adapters"].default == [] and params["max_new_tokens"].default == 512
    assert params["temperature"].default == 0.0 and params["infer_backend"].default == "transformers"
    assert list(params)[-1] == "plugin_fields" and params["plugin_fields"].kind is inspect.Parameter.VAR_KEYWORD
    for name, command in API.items():
        flags = set(inspect.signature(getattr(swiftkit, name)).parameters) - {"config", "plugin_fields"}
        assert flags == set(command.config.flat_fields()), name
        assert getattr(swiftkit, name).__doc__.startswith(command.help)


def test_an_unknown_keyword_is_a_config_error_naming_the_closest_flag():
    with pytest.raises(ConfigError, match="did you mean 'max_new_tokens'"):
        swiftkit.infer(model="m", max_new_token=5)
