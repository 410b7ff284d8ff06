"""Every `swiftkit ...` command shown in README.md and docs/*.md works as shown.

* A command in a fenced code block runs here, in doc order, in one workspace (a later command may
  use what an earlier one wrote, as a reader following the page would), unless its line carries a
  visible marker ``(needs ...)`` saying why it cannot run here (a hub, a GPU, a plugin package).
* Every flag shown, in code blocks and in inline `swiftkit ...` synopses, exists for its command.

What the runs change, all declared here and nowhere else (SUBSTITUTIONS and the workspace fixture):
the model becomes a tiny random llama (2 layers) with a ChatML tokenizer; hub datasets become small
local files of the same row shape; file names in the commands (data.jsonl, corpus.txt, my_mcq/, the trained
run ``out/v0-20261127-120000``, ...) are created in the workspace beforehand; training stops after
2 steps; generation stops after 4 tokens; interactive chats get "Hello" and "exit" on stdin; a
server (deploy, rollout) is started, answers /health, and is stopped with SIGINT.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_sft_cli import ROWS, write_jsonl

from swiftkit.cli.listing import list_parser
from swiftkit.cli.main import main
from swiftkit.cli.plugins_cmd import plugins_parser
from swiftkit.cli.webui_cmd import webui_parser
from swiftkit.commands import COMMANDS
from swiftkit.config.flagnames import field_aliases

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"\((needs [^)]+)\)")
TINY = "{tiny}"  # filled with the tiny model's folder

# -- the substitutions, in one place ---------------------------------------------------------------

MODELS = {"smollm2-135m-instruct", "...", "MODEL", "./my-base-model", "./base-model"}
DATASETS = {  # hub datasets -> local files of the same shape (created by the workspace fixture)
    "alpaca-gpt4-data-en#2000": "data.jsonl#8",
    "gsm8k-grpo": "grpo.jsonl",
    "gsm8k-grpo#500": "grpo.jsonl#8",
    "kto-mix-14k#2000": "kto.jsonl#8",
    "dpo-mix-7k": "pairs.jsonl",
    "...": "data.jsonl",
}
ADAPTERS = {"...": "out/v0-20261127-120000/checkpoint-50",
            "out/v0-.../checkpoint-50": "out/v0-20261127-120000/checkpoint-50"}
TRAINING = {"sft", "pt", "rlhf"}
GENERATING = {"infer", "eval", "deploy"}
SUBSTITUTIONS = {"--model": dict.fromkeys(MODELS, TINY), "--dataset": DATASETS, "--val_dataset": DATASETS,
                 "--adapters": ADAPTERS}


@dataclass
class Shown:
    page: str
    line: int
    text: str  # the command as the page shows it (continuations joined, comment kept)
    runs: bool  # in a code block and not marked

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _strip_comment(text: str) -> tuple[str, str]:
    """``(command, comment)``: a ``#`` after whitespace and outside quotes starts the comment."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip(), text[i:]
    return text.rstrip(), ""


def shown_commands() -> list[Shown]:
    out = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").split("\n")
        in_block, i = False, 0
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith("```"):
                in_block = not in_block
            elif in_block:
                text = stripped[2:] if stripped.startswith("$ ") else stripped
                if text.startswith("swiftkit ") and not re.match(r"swiftkit [\w ]+: ", text):
                    first = i
                    while _strip_comment(text)[0].endswith("\\") and i + 1 < len(lines):
                        i += 1
                        text = _strip_comment(text)[0][:-1] + " " + lines[i].strip()
                    out.append(Shown(page.name, first + 1, text, not MARKER.search(text)))
            else:
                for span in re.findall(r"`(swiftkit [^`]+)`", lines[i]):
                    if not re.match(r"swiftkit [\w ]+: ", span):
                        out.append(Shown(page.name, i + 1, span, False))
            i += 1
    return out


SHOWN = shown_commands()
RUNNABLE = [s for s in SHOWN if s.runs]


def split_command(tokens: list[str]) -> tuple[str, list[str]]:
    name = " ".join(tokens[1:3]) if " ".join(tokens[1:3]) in COMMANDS else tokens[1] if len(tokens) > 1 else ""
    return name, tokens[1 + len(name.split()):]


def substitute(tokens: list[str], tiny: str) -> list[str]:
    """The argv the test runs for a shown command (see the module docstring)."""
    name, rest = split_command(tokens)
    if name not in COMMANDS:  # `swiftkit --help`
        return tokens[1:]
    argv, flag = list(name.split()), None
    for token in rest:
        if token == "..." and not argv[-1].startswith("--"):  # "the usual flags": a model and data
            argv += ["--model", tiny, "--dataset", "data.jsonl"] if name != "rlhf" else \
                ["--model", tiny, "--dataset", "grpo.jsonl", "--per_device_train_batch_size", "4"]
            flag = None
            continue
        if token.startswith("--"):
            flag = token
            argv.append(token)
            continue
        label, sep, value = token.rpartition("=") if flag == "--adapters" else ("", "", token)  # NAME=PATH
        argv.append(label + sep + SUBSTITUTIONS.get(flag, {}).get(value, value).replace(TINY, tiny))
    if name in TRAINING and len(argv) > 1 and argv[1].endswith((".yaml", ".yml")) and "--model" not in argv:
        argv += ["--model", tiny]  # a shipped example config names the real model
    if name in TRAINING:
        argv = _capped(argv, "--max_steps", 2) + ["--report_to", "none"]
    if name in GENERATING:
        argv = _capped(argv, "--max_new_tokens", 4)
    return argv


def _capped(argv: list[str], flag: str, limit: int) -> list[str]:
    if flag in argv:
        i = argv.index(flag) + 1
        return [*argv[:i], str(min(int(argv[i]), limit)), *argv[i + 1:]]
    return [*argv, flag, str(limit)]


# -- the flags shown exist ---------------------------------------------------------------------------

def _known_flags(name: str, rest: list[str]) -> set[str]:
    command = COMMANDS[name]
    if command.config is not None:
        aliases = {f"--{a}" for a in field_aliases(command.config)}  # ms-swift's names of swiftkit's fields
        return {f"--{f}" for f in command.config.flat_fields()} | aliases | {"--help", "--debug", "-p"}
    parser = {"list": list_parser, "web-ui": webui_parser}.get(name, plugins_parser)()
    if name == "plugins" and rest and rest[0] in parser._subparsers._group_actions[0].choices:
        parser = parser._subparsers._group_actions[0].choices[rest[0]]
    return set(parser._option_string_actions)


TOP_LEVEL = {"--help", "-h", "--version", "-V"}  # `swiftkit --help`
PLUGIN_FLAGS = {"my_rewards.py": {"--keyword"}}  # flags the docs' plugin files declare


@pytest.mark.parametrize("shown", SHOWN, ids=lambda s: s.id)
def test_every_flag_shown_exists(shown):
    command, _ = _strip_comment(shown.text)
    tokens = [t.strip("[]") for t in shlex.split(command.replace("|", " "))]
    name, rest = split_command(tokens)
    if name in TOP_LEVEL:
        assert not rest, f"{shown.id}: `{command}`"
        return
    assert name in COMMANDS, f"{shown.id}: `{command}` names no swiftkit command"
    known = _known_flags(name, rest)
    for token in tokens:
        if token in PLUGIN_FLAGS:
            known |= PLUGIN_FLAGS[token]
    unknown = [t for t in rest if t.startswith("-") and t.split("=")[0] not in known]
    assert not unknown, f"{shown.id}: `swiftkit {name}` has no {unknown}"


def test_the_pages_show_commands():
    assert len(RUNNABLE) >= 30 and {s.page for s in RUNNABLE} >= {"README.md", "sft.md", "rlhf.md", "deploy.md"}


# -- the commands run ---------------------------------------------------------------------------------

def _code_block(page: str, needle: str) -> str:
    """The first python code block of ``page`` containing ``needle`` (a plugin file the page shows)."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", text, re.DOTALL):
        if needle in block:
            return block
    raise AssertionError(f"docs/{page} shows no python block with {needle!r}")


@pytest.fixture(scope="module")
def workspace(tiny_model_dir, tmp_path_factory):
    """The files the shown commands name, and a trained run where the pages expect one."""
    ws = tmp_path_factory.mktemp("docs")
    tiny = str(tiny_model_dir("llama", "chatml"))
    for name in ("data.jsonl", "train.jsonl", "eval.jsonl", "qa.jsonl", "sft.jsonl"):
        write_jsonl(ws / name, ROWS * 2)
    (ws / "corpus.txt").write_text("".join(f"Line {i} of a small corpus about the sea.\n" for i in range(12)))
    import pandas as pd

    pd.DataFrame({"messages": [json.dumps(r["messages"]) for r in ROWS[:2]] * 4}).to_parquet(ws / "my_chats.parquet")
    write_jsonl(ws / "pairs.jsonl", [{"prompt": f"Say {w}.", "chosen": w, "rejected": "no"}
                                     for w in ("yes", "hello", "ok", "fine")] * 2)
    write_jsonl(ws / "kto.jsonl", [{"prompt": f"Say {w}.", "completion": w, "label": i % 2 == 0}
                                   for i, w in enumerate(("yes", "hello", "ok", "fine"))] * 2)
    write_jsonl(ws / "prompts.jsonl", [{"messages": [{"role": "user", "content": f"Count to {i}."}]} for i in range(8)])
    write_jsonl(ws / "grpo.jsonl", [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
                                     "solution": str(2 * i)} for i in range(8)])
    (ws / "config.yaml").write_text(f"model: {tiny}\ndataset: [data.jsonl]\nmax_steps: 2\nreport_to: [none]\n")
    from tests.evaldata import GSM8K_ROWS, general_mcq_folder

    general_mcq_folder(ws).rename(ws / "my_mcq")  # docs/eval.md's local benchmark files
    write_jsonl(ws / "gsm8k.jsonl", GSM8K_ROWS)
    write_jsonl(ws / "texts.jsonl", [{"text": f"Line {i} of a small corpus about the sea."} for i in range(4)])
    shutil.copytree(ROOT / "examples", ws / "examples")
    (ws / "my_loss.py").write_text(_code_block("plugins.md", "label_smoothed"))
    (ws / "my_rewards.py").write_text(_code_block("rewards.md", "class Keyword"))
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        assert main(["sft", "--model", tiny, "--dataset", "data.jsonl", "--max_steps", "2", "--output_dir", "trained",
                     "--report_to", "none"]) == 0
    finally:
        os.chdir(cwd)
    run = next((ws / "trained").glob("v*-*"))
    (run / "checkpoint-2").rename(run / "checkpoint-50")
    for target in ("out/v0-20261127-120000", "output/v0-20261127-120000"):
        shutil.copytree(run, ws / target)
    for target in ("runs/sql/checkpoint-200", "runs/chat/checkpoint-80"):
        shutil.copytree(run / "checkpoint-50", ws / target)
    return ws, tiny


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _interruptible() -> None:
    """In the server's process: SIGINT as a terminal delivers it, even when this test runs as a background job
    (a shell starts those with SIGINT ignored, and an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _serve(argv: list[str], cwd: Path) -> None:
    """Start `swiftkit deploy` (or `rollout`) on a free port, wait for /health, stop it with SIGINT: it must shut
    down cleanly and exit with the shell's status for SIGINT (130)."""
    port = str(_free_port())
    if "--port" in argv:
        argv[argv.index("--port") + 1] = port
    else:
        argv += ["--port", port]
    proc = subprocess.Popen([sys.executable, "-m", "swiftkit.cli.main", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_interruptible)
    try:
        deadline, health = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    health = json.loads(resp.read())
                break
            except OSError:
                time.sleep(0.3)
        assert health is not None and health["status"] == "ok", proc.stdout.read() if proc.poll() is not None else ""
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130 and f"{argv[0]}: stopped" in output, output


@pytest.mark.parametrize("shown", RUNNABLE, ids=lambda s: s.id)
def test_shown_command_runs(shown, workspace, monkeypatch, capsys):
    ws, tiny = workspace
    command, _ = _strip_comment(shown.text)
    argv = substitute(shlex.split(command), tiny)
    if argv[0] in ("deploy", "rollout"):
        _serve(argv, ws)
        return
    monkeypatch.chdir(ws)
    if argv[0] == "infer" and "--val_dataset" not in argv:
        monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\nexit\n"))
    try:
        code = main(argv)
    except SystemExit as exc:  # --help
        code = exc.code
    assert code == 0, f"{shown.id}: swiftkit {' '.join(argv)}\n{capsys.readouterr().err[-3000:]}"
