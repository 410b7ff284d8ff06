"""The ``swiftkit`` console script: ``swiftkit COMMAND [config.yaml] [--flag value ...]``.

Heavy libraries are imported by the command that runs, never for ``--help``.
"""

from __future__ import annotations

import os
import sys

from swiftkit import __version__

COMMAND_HELP = {
    "sft": "Supervised fine-tuning (LoRA / full / freeze) on conversations.",
    "pt": "Continued pretraining on raw text (loss on every token).",
    "rlhf": "Alignment: --rlhf_type dpo|orpo|simpo|cpo|kto|rm|ppo|grpo on preference, labelled or prompt data.",
    "infer": "Chat with a model or trained adapters, interactively or over a dataset.",
    "eval": "Score a model or trained adapters on benchmarks (built in: qa on --val_dataset).",
    "export": "Write trained adapters as a model other tools load (built in: merged safetensors).",
    "deploy": "Serve a model and its adapters over an OpenAI-compatible HTTP API (/v1/chat/completions).",
    "data": "Check a dataset (data lint) or show an encoded row with its trained tokens (data preview).",
    "list": "List registered entries: swiftkit list models|datasets|templates|preprocessors|rewards.",
    "plugins": "Inspect or create plugins: swiftkit plugins list | new NAME.",
}

USAGE = """usage: swiftkit COMMAND [config.yaml] [--flag value ...]

swiftkit {version}: fine-tune, infer and deploy LLMs.

commands:
{commands}

Run `swiftkit COMMAND --help` for the flags of a command (each with its help text and default).
Example:
  swiftkit sft --model smollm2-135m-instruct --train_type lora \\
      --dataset self-cognition#200 --model_name Nova --model_author Acme --max_steps 20
"""


def _usage() -> str:
    commands = "\n".join(f"  {name:<8} {text}" for name, text in COMMAND_HELP.items())
    return USAGE.format(version=__version__, commands=commands)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Error classes that mean 'bad input': printed as one line, no traceback."""
    from swiftkit.choices import ChoiceError
    from swiftkit.config import ConfigError
    from swiftkit.plugins import PluginError
    from swiftkit.registry import RegistryError

    errors: list[type[BaseException]] = [ChoiceError, ConfigError, PluginError, RegistryError]
    for mod, name in (
        ("swiftkit.data", "DatasetError"),
        ("swiftkit.models", "ModelNotFoundError"),
        ("swiftkit.templates", "TemplateError"),
        ("swiftkit.train.errors", "TrainError"),
    ):
        module = sys.modules.get(mod)
        if module is not None and hasattr(module, name):
            errors.append(getattr(module, name))
    return tuple(errors)


def _run_list(argv: list[str]) -> int:
    from swiftkit.cli.listing import list_command

    return list_command(argv)


def _run_command(command: str, argv: list[str]) -> int:
    from swiftkit.cli.args import parse_config
    from swiftkit.config import COMMANDS

    cfg = parse_config(COMMANDS[command], argv)
    # Runtime settings for the libraries this command loads (not configuration): OpenMP threads
    # that spin while idle make steps 3-5x slower on a shared 2-core machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from swiftkit._compat import silence_known_warnings

    silence_known_warnings()
    if command in ("sft", "pt"):
        from swiftkit.train.sft import run_training

        run_training(cfg)
    elif command == "rlhf":
        from swiftkit.train.rlhf import run_rlhf

        run_rlhf(cfg)
    elif command == "infer":
        from swiftkit.infer import InferRecipe

        recipe = InferRecipe(cfg)
        recipe.setup()
        recipe.run()
    elif command == "eval":
        from swiftkit.evaluate import run_eval

        run_eval(cfg)
    elif command == "export":
        from swiftkit.export import run_export

        run_export(cfg)
    elif command == "deploy":
        from swiftkit.deploy import run_deploy

        run_deploy(cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"swiftkit {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMAND_HELP:
        from swiftkit.registry import closest

        print(f"swiftkit: error: unknown command {command!r}{closest(command, COMMAND_HELP)}", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    try:
        if command == "list":
            return _run_list(rest)
        if command == "data":
            from swiftkit.cli.data_cmd import data_command

            return data_command(rest)
        if command == "plugins":
            from swiftkit.cli.plugins_cmd import plugins_command

            return plugins_command(rest)
        return _run_command(command, rest)
    except KeyboardInterrupt:
        print("swiftkit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            name = f"{command} {rest[0]}" if command == "data" and rest else command
            print(f"swiftkit {name}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
