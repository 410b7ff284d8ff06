"""The inference recipe: ``setup()`` loads model + template, ``run()`` chats or answers a dataset.

Batch mode (``--val_dataset`` given, or the validation rows of the ``--adapters`` run with
``--load_data_args true``, see :func:`~swiftkit.inference.loading.with_run_data_args`): every row's
prompt is its messages without the final assistant reply, which becomes ``labels``; replies are
written as JSON lines to
``--result_path`` (default ``<first adapter dir or cwd>/infer_result/<timestamp>.jsonl``). The
file appears under its final name only once every row is written.

Interactive mode (otherwise): a ``<<< `` prompt on stdout, multi-turn history; a message is one
line, lines continued with a trailing backslash, or a block between two lines of three double
quotes. ``clear``
forgets the history, ``reset-system TEXT`` sets a new system prompt (and clears the history),
``exit`` / ``quit`` / end of input stops.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from swiftkit.config import InferConfig
from swiftkit.core.errors import ConfigError
from swiftkit.core.io import timestamped_path
from swiftkit.inference.base import attach_images
from swiftkit.inference.loading import with_run_data_args
from swiftkit.inference.replies import batched_replies, generation_kwargs, load_val_rows, split_prompt
from swiftkit.recipes.engines import load_engine, seed_sampling

INTERACTIVE_HELP = (
    "Type a message. A line ending with \\ continues on the next line; a line of three double quotes\n"
    "starts and ends a multi-line block. Commands: clear (forget the conversation), reset-system TEXT\n"
    "(new system prompt, history cleared; without TEXT: back to the default), exit or quit.\n"
)


def _read_message(stdin, stdout) -> str | None:
    """One message from ``stdin``: a line, backslash-continued lines, or a block between two lines
    of three double quotes; None at end of input."""
    stdout.write("<<< ")
    stdout.flush()
    line = stdin.readline()
    if not line:
        return None
    if line.strip() == '"""':
        lines = []
        while (more := stdin.readline()) and more.strip() != '"""':
            lines.append(more.rstrip("\n"))
        return "\n".join(lines)
    lines = [line.rstrip("\n")]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        more = stdin.readline()
        if not more:
            break
        lines.append(more.rstrip("\n"))
    return "\n".join(lines)


def default_result_path(cfg: InferConfig) -> Path:
    """``<first adapter dir or cwd>/infer_result/<timestamp>.jsonl``."""
    adapters = cfg.adapter.adapters
    base = Path(adapters[0]) if adapters else Path.cwd()
    return timestamped_path(base / "infer_result", ".jsonl")


class InferRecipe:
    """Chat with a model (interactive) or generate replies for a dataset (batch)."""

    def __init__(self, config: InferConfig, host):
        self.config = config
        self.host = host

    def setup(self) -> None:
        self.config = with_run_data_args(self.config)  # --load_data_args: the run's validation rows
        self.engine, self.info = load_engine(self.config, self.host)
        self.gen_kwargs = generation_kwargs(self.config.generation)
        seed_sampling(self.config.data.data_seed)

    # -- run ------------------------------------------------------------------------------------

    def run(self, stdin=None, stdout=None) -> dict:
        """Batch mode when there are rows to answer (--val_dataset), else interactive chat on stdin/stdout."""
        if self.config.has_val_data:
            return self.run_batch()
        return self.run_interactive(stdin or sys.stdin, stdout or sys.stdout)

    def run_batch(self) -> dict:
        cfg = self.config
        rows = load_val_rows(cfg, self.host.registries, require_reply=False)
        with_av = next((r for r in rows if r.get("videos") or r.get("audios")), None)
        if with_av is not None:
            raise ConfigError(f"{with_av['_origin']}: the row has videos or audio: infer and deploy take text and "
                              "images; videos and audio train with sft")
        path = Path(cfg.generation.result_path) if cfg.generation.result_path else default_result_path(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        start = time.time()
        prompts, labels = zip(*(split_prompt(attach_images(r["messages"], r.get("images"))) for r in rows)) \
            if rows else ((), ())
        try:
            with tmp.open("w", encoding="utf-8") as out, tqdm(total=len(rows), unit="row", file=sys.stderr,
                                                              desc="infer", mininterval=1.0) as bar:
                done = 0
                for replies in batched_replies(self.engine, prompts, cfg.generation.max_batch_size, self.gen_kwargs):
                    for prompt, label, reply in zip(prompts[done:], labels[done:], replies):
                        line = {"messages": prompt, "response": reply, "labels": label}
                        out.write(json.dumps(line, ensure_ascii=False) + "\n")
                    out.flush()
                    done += len(replies)
                    bar.update(len(replies))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        print(f"[swiftkit] infer: {len(rows)} rows in {time.time() - start:.1f} s; results written to {path}",
              file=sys.stderr)
        return {"result_path": str(path), "num_rows": len(rows)}

    def run_interactive(self, stdin, stdout) -> dict:
        history: list[dict] = []
        system: list[dict] = []  # set by reset-system; else the template's --system applies
        turns = 0
        stdout.write(INTERACTIVE_HELP)
        while True:
            query = _read_message(stdin, stdout)
            if query is None:  # end of input
                stdout.write("\n")
                break
            if not query.strip():
                continue
            command, _, rest = query.strip().partition(" ")
            if command in ("exit", "quit"):
                break
            if command == "clear":
                history = []
                stdout.write("(history cleared)\n")
                continue
            if command == "reset-system":
                system = [{"role": "system", "content": rest.strip()}] if rest.strip() else []
                history = []
                stdout.write(f"(system prompt {'set' if system else 'reset to the default'}; history cleared)\n")
                continue
            history.append({"role": "user", "content": query})
            reply = self._reply(system + history, stdout)
            history.append({"role": "assistant", "content": reply})
            turns += 1
        stdout.flush()
        return {"turns": turns}

    def _reply(self, history: list[dict], stdout) -> str:
        if not self.config.generation.stream:
            reply = self.engine.generate([history], **self.gen_kwargs)[0]
            stdout.write(reply + "\n")
            return reply
        pieces = []
        for piece in self.engine.stream(history, **self.gen_kwargs):
            pieces.append(piece)
            stdout.write(piece)
            stdout.flush()
        stdout.write("\n")
        return "".join(pieces)
