"""The ``swiftkit`` console script: ``swiftkit COMMAND [config.yaml] [--flag value ...]``.

The command table (:mod:`swiftkit.commands`) says which commands exist and what they do. For a
recipe command the script builds one plugin host, parses the flags (those plugins add included)
into the command's config, and runs the recipe. A :class:`~swiftkit.core.errors.SwiftkitError`
(bad input) is printed as one line and exits with status 2, and so is a write the filesystem refused
(full disk, read-only folder, a file where a folder should be); ``--debug`` (anywhere on the command
line) adds the traceback. Heavy libraries are imported by the command that runs, never for ``--help``.
"""

from __future__ import annotations

import pickle
import sys
import traceback

from swiftkit import __version__
from swiftkit.cli.args import config_and_host
from swiftkit.cli.launch import launch, torchrun_options
from swiftkit.cli.listing import list_command
from swiftkit.cli.plugins_cmd import plugins_command
from swiftkit.cli.webui_cmd import webui_command
from swiftkit.commands import COMMANDS, run
from swiftkit.core import allocator
from swiftkit.core._compat import silence_known_warnings
from swiftkit.core.checkpoints import refused_pickle
from swiftkit.core.errors import SwiftkitError
from swiftkit.core.io import write_problem
from swiftkit.core.registry import closest

# Commands that train: started from the command line they run under tcmalloc when it is installed
# (swiftkit.core.allocator).
TRAINING = ("sft", "pt", "rlhf")
TOOLS = {"list": list_command, "plugins": plugins_command, "web-ui": webui_command}  # the table's tool commands

USAGE = """usage: swiftkit COMMAND [config.yaml] [--flag value ...] [--debug]

swiftkit {version}: fine-tune, align, infer, evaluate, export and deploy LLMs.

commands:
{commands}

Run `swiftkit COMMAND --help` for the flags of a command (each with its help text and default).
--debug prints the full traceback of an error.
Example:
  swiftkit sft --model smollm2-135m-instruct --train_type lora \\
      --dataset self-cognition#200 --model_name Nova --model_author Acme --max_steps 20
"""


def usage() -> str:
    commands = "\n".join(f"  {name:<13} {c.help}" for name, c in COMMANDS.items())
    return USAGE.format(version=__version__, commands=commands)


def _split_command(argv: list[str]) -> tuple[str, list[str]]:
    """The command name (``data lint`` is two words) and the arguments after it."""
    if argv[0] == "data" and len(argv) > 1 and not argv[1].startswith("-"):
        return f"data {argv[1]}", argv[2:]
    return argv[0], argv[1:]


def _unknown(name: str) -> int:
    if name.startswith("data ") or name == "data":
        actions = [c.split(" ", 1)[1] for c in COMMANDS if c.startswith("data ")]
        given = name[5:]
        if given:
            print(f"swiftkit data: error: unknown action {given!r}{closest(given, actions)}", file=sys.stderr)
        print(f"usage: swiftkit data {'|'.join(actions)} --dataset ... [--model ...]\n", file=sys.stderr)
        for action in actions:
            print(f"  {action:<8} {COMMANDS['data ' + action].help}", file=sys.stderr)
        return 2
    print(f"swiftkit: error: unknown command {name!r}{closest(name, COMMANDS)}", file=sys.stderr)
    print(usage(), file=sys.stderr)
    return 2


def run_command(name: str, argv: list[str]) -> int:
    """Run one command of the table with its arguments; the exit status."""
    command = COMMANDS[name]
    if command.is_tool:
        return TOOLS[name](argv)
    cfg, host = config_and_host(command, argv)
    result = run(command, cfg, host)
    return int(result.get("exit_code", 0)) if isinstance(result, dict) else 0


def _reexec_with_allocator(name: str, rest: list[str]) -> int | None:
    """For a training command started from the command line: re-execute this process once with the
    allocator SWIFTKIT_ALLOCATOR asks for preloaded (does not return), or go on (None), or the exit
    status of a bad SWIFTKIT_ALLOCATOR."""
    if name not in TRAINING or "-h" in rest or "--help" in rest:
        return None
    try:
        allocator.preload_allocator()
    except allocator.AllocatorError as exc:
        print(f"swiftkit {name}: error: {exc}", file=sys.stderr)
        return 2
    return None


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    silence_known_warnings()  # the tool commands (list, plugins) import peft/transformers too
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"swiftkit {__version__}")
        return 0
    name, rest = _split_command(argv)
    if name not in COMMANDS:
        return _unknown(name)
    if from_command_line and (status := _reexec_with_allocator(name, rest)) is not None:
        return status
    try:
        options = torchrun_options() if name in TRAINING and not {"-h", "--help"} & set(rest) else None
        if options is not None:  # NPROC_PER_NODE / NNODES: the flags are checked here once, then one run per rank
            config_and_host(COMMANDS[name], rest)
            return launch(options, [name, *rest, *(["--debug"] if debug else [])])
        return run_command(name, rest)
    except KeyboardInterrupt:
        print("swiftkit: interrupted", file=sys.stderr)
        return 130
    except SwiftkitError as exc:
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (--debug shows the traceback)" if exc.__cause__ is not None else ""
        print(f"swiftkit {name}: error: {exc}{hint}", file=sys.stderr)
        return 2
    except OSError as exc:  # the filesystem refused a write no step turned into an OutputError
        problem = write_problem(exc)
        if problem is None or not exc.filename:
            raise
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (--debug shows the traceback)"
        print(f"swiftkit {name}: error: {str(exc.filename)!r}: {exc.strerror}: {problem}{hint}", file=sys.stderr)
        return 2
    except pickle.UnpicklingError as exc:  # torch refused to unpickle a file (weights_only=True)
        if "weights only load failed" not in str(exc).lower():
            raise
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (--debug shows the traceback)"
        print(f"swiftkit {name}: error: a model file {refused_pickle(exc)}; use files you trust, saved as "
              f"safetensors{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
