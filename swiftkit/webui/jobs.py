"""Jobs: commands of the command table run as ``swiftkit`` subprocesses, their state kept on disk.

A job is ``python -m swiftkit.cli.main COMMAND --flag value ...`` (the line :attr:`Job.command_line`
shows, so a shell reproduces it) started in its own session, with stdout and stderr in the job's
log. A small monitor process (this module run as a script) starts the CLI, waits for it and writes
its exit status, so a job's state is right even when the UI that started it stopped meanwhile:
everything about a job is in ``ROOT/jobs/<id>/`` (``job.json``, ``log.txt``, ``cli_pid``,
``exit_code``, ``stop_requested``) and a new :class:`JobManager` on the same root reads it back.

Stopping a job sends SIGTERM to the CLI process; training commands run with the ``graceful_exit``
callback (see :func:`job_values`), which saves a complete checkpoint and ends the run normally. After
the timeout the job's whole process group gets SIGKILL.

:func:`runs` lists the training runs found in output folders (``v<N>-<timestamp>/`` with args.json),
:func:`loss_points` reads a run's training loss from ``logging.jsonl`` and :func:`resume_values`
gives the values that continue a run with ``--resume_from_checkpoint``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swiftkit.core.checkpoints import last_complete
from swiftkit.core.io import pid_alive
from swiftkit.webui import forms

TRAINING_COMMANDS = ("sft", "pt", "rlhf")
STOP_CALLBACK = "graceful_exit"
RUN_DIR_RE = re.compile(r"^v(\d+)-")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

JOB_FILE, LOG_FILE, EXIT_FILE, STOP_FILE, CLI_PID_FILE, NOTE_FILE = "job.json", "log.txt", "exit_code", \
    "stop_requested", "cli_pid", "note"
_STOPPED_EARLY_NOTE = "stopped before the command recorded an exit status (the job's processes were killed)"
_LOST_NOTE = ("the job's monitor process ended without recording an exit status (it was killed, or the machine "
              "restarted); the command did not finish")


@dataclass
class Job:
    """One command run as a subprocess; ``status`` is running, finished, failed or stopped (ended after
    a stop was asked for)."""

    id: str
    command: str
    argv: list[str]  # the command as a shell runs it: ["swiftkit", "sft", "--model", ...]
    cwd: str
    log_path: Path
    started: float
    pid: int | None = None  # the monitor process, leader of the job's process group
    status: str = "running"
    exit_code: int | None = None
    output_dir: Path | None = None  # the --output_dir root (absolute), for commands that have one
    run_dir: Path | None = None  # the run folder a training job created, once it exists
    title: str = ""
    values: dict = field(default_factory=dict)  # the flag values it runs with (cleaned)
    ended: float | None = None
    note: str = ""  # why the status is what it is, when the exit status does not say
    cli_pid: int | None = None
    stop_requested: bool = False

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)

    @property
    def running(self) -> bool:
        return self.status == "running"


def job_values(command: str, values: dict[str, Any], host=None) -> dict[str, Any]:
    """The values a job of ``command`` runs with: ``values`` cleaned (:func:`forms.clean_values`; with
    ``host``, the flags its plugins add are typed too), and for a training command the ``graceful_exit``
    callback added, so that stopping the job saves a checkpoint it can resume from (not for --dry_run,
    which trains nothing)."""
    values = forms.clean_values(command, values, host)
    if command in TRAINING_COMMANDS and not values.get("dry_run"):
        callbacks = list(values.get("callbacks", []))
        if STOP_CALLBACK not in callbacks:
            values["callbacks"] = [*callbacks, STOP_CALLBACK]
    return values


# -- processes ---------------------------------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), None when it is gone or a
    zombie; "" where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else ""
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(pid: int | None, ticks: str | None = None, boot: str | None = None) -> bool:
    """Whether process ``pid`` runs and is the one recorded (same boot, same start time)."""
    if not pid:
        return False
    if boot and boot != _boot_id():
        return False
    now = _start_ticks(pid)
    if now is None:
        return False
    if now == "":  # no /proc: ask the kernel
        return pid_alive(pid)
    return not ticks or now == ticks


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- the manager ---------------------------------------------------------------------------------------


class JobManager:
    """Starts, lists and stops jobs recorded under ``root/jobs/``; each runs in ``workdir`` (default:
    the current directory), where relative paths in its flags are read. ``host`` (the UI's plugin
    host) types the values of the flags its plugins add; the job's own CLI process loads its plugins
    itself (installed ones, and --plugins files)."""

    def __init__(self, root: Path, workdir: Path | None = None, host=None):
        self.host = host
        self.root = Path(root).expanduser().resolve()
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(workdir).expanduser().resolve() if workdir is not None else Path.cwd()
        self._procs: dict[str, subprocess.Popen] = {}  # monitors started here, reaped as they end

    # -- start -----------------------------------------------------------------------------------------

    def start(self, command: str, values: dict[str, Any], title: str = "") -> Job:
        """Run ``swiftkit COMMAND`` with ``values`` (see :func:`job_values`) in the background."""
        values = job_values(command, values, self.host)
        argv = forms.command_argv(command, values, self.host)
        record = self._new_record(command)
        log_path = record / LOG_FILE
        log_path.touch()
        started = time.time()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            with log_path.open("ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "swiftkit.webui.jobs", "--record", str(record), "--", *argv[1:]],
                    cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True)
        except OSError:
            shutil.rmtree(record, ignore_errors=True)  # no record of a job that never started
            raise
        self._procs[record.name] = proc
        job = Job(id=record.name, command=command, argv=argv, cwd=str(self.workdir), log_path=log_path,
                  started=started, pid=proc.pid, title=title or command, values=values,
                  output_dir=self._output_root(command, values))
        data = _job_record(job)
        data.update(pid_ticks=_start_ticks(proc.pid), boot_id=_boot_id())
        _write_json(record / JOB_FILE, data)
        return self.get(job.id)

    def _new_record(self, command: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = command.replace(" ", "-")
        n = 1
        while True:
            record = self.jobs_dir / (f"{stamp}-{slug}" if n == 1 else f"{stamp}-{slug}-{n}")
            try:
                record.mkdir()
                return record
            except FileExistsError:
                n += 1

    def _output_root(self, command: str, values: dict) -> Path | None:
        cmd = forms.command(command)
        fields = cmd.config.flat_fields()
        if "output_dir" not in fields:
            return None
        out = values.get("output_dir", forms.field_default(fields["output_dir"][1]))
        return (self.workdir / Path(out).expanduser()).resolve() if out else None

    # -- state -------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job ``job_id`` as its files say now (a KeyError when there is none)."""
        record = self.jobs_dir / job_id
        try:
            data = json.loads((record / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyError(f"no job {job_id!r} under {self.jobs_dir}") from exc
        return self._refresh(record, data)

    def list(self) -> list[Job]:
        """Every job recorded under the root, newest first."""
        jobs = []
        for record in self.jobs_dir.iterdir() if self.jobs_dir.is_dir() else ():
            with contextlib.suppress(KeyError):
                jobs.append(self.get(record.name))
        return sorted(jobs, key=lambda j: j.started, reverse=True)

    def _refresh(self, record: Path, data: dict) -> Job:
        proc = self._procs.get(record.name)
        if proc is not None and proc.poll() is not None:
            self._procs.pop(record.name, None)  # reaped: no zombie left behind
        job = Job(id=data["id"], command=data["command"], argv=list(data["argv"]), cwd=data["cwd"],
                  log_path=record / LOG_FILE, started=data["started"], pid=data.get("pid"),
                  title=data.get("title", ""), values=dict(data.get("values", {})),
                  output_dir=Path(data["output_dir"]) if data.get("output_dir") else None,
                  run_dir=Path(data["run_dir"]) if data.get("run_dir") else None)
        job.cli_pid = _read_int(record / CLI_PID_FILE)
        asked = _mtime(record / STOP_FILE)
        job.stop_requested = asked is not None
        job.exit_code = _read_int(record / EXIT_FILE)
        with contextlib.suppress(OSError):
            job.note = (record / NOTE_FILE).read_text(encoding="utf-8").strip()
        if job.exit_code is not None:
            job.ended = _mtime(record / EXIT_FILE)
            # A stop asked for after the command had ended (a race with its last step) does not make it stopped.
            stopped = asked is not None and (job.ended is None or asked <= job.ended)
            job.status = "stopped" if stopped else "finished" if job.exit_code == 0 else "failed"
        elif _alive(job.pid, data.get("pid_ticks"), data.get("boot_id")) or (
                job.cli_pid and _alive(job.cli_pid, None, data.get("boot_id"))):
            job.status = "running"
        else:
            job.status = "stopped" if job.stop_requested else "failed"
            job.note = job.note or (_STOPPED_EARLY_NOTE if job.stop_requested else _LOST_NOTE)
        if job.run_dir is None and job.command in TRAINING_COMMANDS and not data.get("run_dir_searched"):
            job.run_dir = find_run_dir(job)
            if job.run_dir is not None or not job.running:  # an ended job's folder is looked for once
                _write_json(record / JOB_FILE, {**data, "run_dir": str(job.run_dir) if job.run_dir else None,
                                                "run_dir_searched": not job.running})
        return job

    # -- waiting and stopping ------------------------------------------------------------------------------

    def wait(self, job_id: str, timeout: float) -> Job:
        """The job once it has ended, or as it is after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        job = self.get(job_id)
        while job.running and time.monotonic() < deadline:
            time.sleep(0.1)
            job = self.get(job_id)
        return job

    def stop(self, job_id: str, timeout: float = 60.0) -> Job:
        """Ask the job to stop (SIGTERM to the CLI process: a training run saves a checkpoint and ends)
        and wait for it; after ``timeout`` seconds kill its whole process group. The job's status is
        then "stopped", whatever its exit status."""
        job = self.get(job_id)
        if not job.running:
            return job
        record = self.jobs_dir / job_id
        _write_text(record / STOP_FILE, f"{time.time()}\n")
        target = job.cli_pid if job.cli_pid and _alive(job.cli_pid) else job.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGTERM)
        job = self.wait(job_id, timeout)
        if job.running:
            _write_text(record / NOTE_FILE, f"did not end within {timeout:g} s of SIGTERM: killed\n")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job.pid, signal.SIGKILL)
            job = self.wait(job_id, 10.0)
            if not (record / EXIT_FILE).exists():
                _write_text(record / EXIT_FILE, f"{-signal.SIGKILL}\n")
            job = self.get(job_id)
        return job

    def log_tail(self, job_id: str, lines: int = 200) -> str:
        """The last ``lines`` lines of the job's log, progress-bar redraws collapsed to their last state."""
        return tail(self.jobs_dir / job_id / LOG_FILE, lines)


def _job_record(job: Job) -> dict:
    data = asdict(job)
    for key in ("status", "exit_code", "ended", "note", "cli_pid", "stop_requested"):
        data.pop(key)  # read from the record's files each time
    for key in ("log_path", "output_dir", "run_dir"):
        data[key] = str(data[key]) if data[key] is not None else None
    return data


def tail(path: Path, lines: int = 200) -> str:
    """The last ``lines`` lines of a text file; a line a progress bar redrew (``\\r``) shows its last text."""
    try:
        with Path(path).open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max(65536, lines * 1024)))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    out = []
    for line in text.split("\n"):
        parts = [p for p in line.split("\r") if p.strip()]
        out.append(parts[-1] if parts else line.strip("\r"))
    if out and out[-1] == "":
        out.pop()
    return "\n".join(out[-lines:])


# -- run folders -------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _finished_run_dir(log_path: Path) -> Path | None:
    """The run folder the CLI names in its "run finished: {...}" line."""
    for line in reversed(tail(log_path, 400).splitlines()):
        _, sep, payload = line.partition("[swiftkit] run finished: ")
        if sep:
            result = _read_json_text(payload)
            if isinstance(result, dict) and result.get("run_dir"):
                return Path(result["run_dir"])
    return None


def _read_json_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _resumed_run_dir(job: Job) -> Path | None:
    """The run folder a ``--resume_from_checkpoint`` value points into (a checkpoint's parent, or the run)."""
    path = Path(job.cwd) / Path(str(job.values["resume_from_checkpoint"])).expanduser()
    if CHECKPOINT_RE.match(path.name):
        return path.parent.resolve()
    if (path / "args.json").is_file():
        return path.resolve()
    return None


def find_run_dir(job: Job) -> Path | None:
    """The run folder a training job writes: the one it names when it finishes, the one it resumes, or
    the run under its output folder created after it started whose args.json holds its flag values."""
    if job.values.get("dry_run"):
        return None
    found = None if job.running else _finished_run_dir(job.log_path)
    if found is not None:
        return (Path(job.cwd) / found).resolve()
    if job.values.get("resume_from_checkpoint"):
        return _resumed_run_dir(job)
    if job.output_dir is None or not job.output_dir.is_dir():
        return None
    new = []
    for path in job.output_dir.iterdir():
        m = RUN_DIR_RE.match(path.name)
        args_file = path / "args.json"
        if m and args_file.is_file() and args_file.stat().st_mtime >= job.started - 1:
            new.append((int(m.group(1)), path))
    for _, path in sorted(new):
        args = _read_json(path / "args.json")
        if isinstance(args, dict) and args.get("command") == job.command and all(
                args.get(k) == _as_json(v) for k, v in job.values.items()):
            return path
    return None


def _as_json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass
class RunInfo:
    """A training run found from its folder."""

    run_dir: Path
    command: str
    model: str | None
    train_type: str | None
    steps_done: int
    last_checkpoint: Path | None
    finished: bool  # train_result.json written (a run stopped with graceful_exit is finished too)
    loss: float | None  # the last training loss logged
    max_steps: int | None = None  # --max_steps, when the run was given one
    updated: float = 0.0  # when args.json was last written (the run started or was resumed)


def runs(output_roots: list[Path]) -> list[RunInfo]:
    """The training runs (folders with args.json) under each root (the root itself, or its
    ``v<N>-...`` folders), newest first."""
    found: dict[Path, RunInfo] = {}
    for root in output_roots:
        root = Path(root).expanduser()
        if not root.is_dir():
            continue
        try:
            candidates = [root] if (root / "args.json").is_file() else sorted(
                p for p in root.iterdir() if RUN_DIR_RE.match(p.name) and p.is_dir())
        except OSError:  # unreadable
            continue
        for path in candidates:
            info = run_info(path)
            if info is not None:
                found[path.resolve()] = info
    return sorted(found.values(), key=lambda r: r.updated, reverse=True)


def run_info(run_dir: Path) -> RunInfo | None:
    """The :class:`RunInfo` of one run folder, None when it is not a training run's."""
    run_dir = Path(run_dir)
    args = _read_json(run_dir / "args.json")
    if not isinstance(args, dict) or args.get("command") not in TRAINING_COMMANDS:
        return None
    points = loss_points(run_dir)
    result = _read_json(run_dir / "train_result.json")
    ckpt = last_complete(run_dir)
    steps = max([points[-1][0]] if points else [], default=0)
    if isinstance(result, dict) and isinstance(result.get("global_step"), int):
        steps = max(steps, result["global_step"])
    if ckpt is not None:
        steps = max(steps, int(CHECKPOINT_RE.match(ckpt.name).group(1)))
    max_steps = args.get("max_steps")
    try:
        updated = (run_dir / "args.json").stat().st_mtime
    except OSError:  # removed meanwhile
        return None
    return RunInfo(run_dir=run_dir, command=args["command"], model=args.get("model"),
                   train_type=args.get("train_type"), steps_done=steps, last_checkpoint=ckpt,
                   finished=isinstance(result, dict), loss=points[-1][1] if points else None,
                   max_steps=max_steps if isinstance(max_steps, int) and max_steps > 0 else None,
                   updated=updated)


def loss_points(run_dir: Path) -> list[tuple[int, float]]:
    """``(step, loss)`` of each training-loss event in the run's logging.jsonl, by step (a step logged
    twice, as a run resumed from an earlier checkpoint does, keeps its latest value)."""
    path = Path(run_dir) / "logging.jsonl"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    points: dict[int, float] = {}
    for line in text.splitlines():
        record = _read_json_text(line) if line.strip() else None
        if not isinstance(record, dict):
            continue  # a line being written, or damaged
        step, loss = record.get("step"), record.get("loss")
        if isinstance(step, int) and isinstance(loss, (int, float)) and not isinstance(loss, bool) \
                and math.isfinite(loss):
            points[step] = float(loss)
    return sorted(points.items())


def resume_values(run: RunInfo | Path) -> dict[str, Any]:
    """The values that continue ``run``: the flags its args.json records as given, and
    ``--resume_from_checkpoint`` its last complete checkpoint (the run folder when it has none yet)."""
    info = run if isinstance(run, RunInfo) else run_info(Path(run))
    if info is None:
        raise ValueError(f"{run} is not a training run folder (no args.json of sft, pt or rlhf)")
    args = _read_json(info.run_dir / "args.json") or {}
    cmd = forms.command(info.command)
    fields = cmd.config.flat_fields()
    given = args.get("flags_given")
    keys = given if isinstance(given, list) else [k for k in fields if k in args]
    values = {k: args[k] for k in keys if k in args and k != "resume_from_checkpoint"}
    values["resume_from_checkpoint"] = str(info.last_checkpoint or info.run_dir)
    return values


# -- the monitor process ---------------------------------------------------------------------------------


def monitor(record: Path, cli_args: list[str]) -> int:
    """Run ``swiftkit CLI_ARGS`` (output appended to the record's log), forward SIGTERM/SIGINT to it, and
    write its exit status to the record's ``exit_code`` when it ends."""
    record = Path(record)
    pending: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum, _frame):
        if child:
            with contextlib.suppress(ProcessLookupError):
                child[0].send_signal(signum)
        else:
            pending.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    with (record / LOG_FILE).open("ab") as log:
        try:
            proc = subprocess.Popen([sys.executable, "-m", "swiftkit.cli.main", *cli_args], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            log.write(f"swiftkit web-ui: cannot start the command: {exc}\n".encode())
            _write_text(record / EXIT_FILE, "127\n")
            return 0
    child.append(proc)
    _write_text(record / CLI_PID_FILE, f"{proc.pid}\n")
    for signum in pending:
        proc.send_signal(signum)
    code = proc.wait()
    _write_text(record / EXIT_FILE, f"{code}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swiftkit.webui.jobs",
                                     description="Run one swiftkit command for the web UI and record its exit status.")
    parser.add_argument("--record", required=True, help="The job's record folder (ROOT/jobs/<id>).")
    parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="-- COMMAND [--flag value ...]")
    ns = parser.parse_args(argv)
    cli_args = ns.cli_args[1:] if ns.cli_args[:1] == ["--"] else ns.cli_args
    return monitor(Path(ns.record), cli_args)


if __name__ == "__main__":
    sys.exit(main())
