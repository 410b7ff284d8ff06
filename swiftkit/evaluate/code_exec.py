"""Running generated programs for code benchmarks (HumanEval, MBPP) and the pass@k estimator.

:func:`run_program` runs one Python program in a child interpreter and says whether it passed:

* a fresh temporary directory is the working directory (and ``HOME``/``TMPDIR``); it is removed
  afterwards;
* ``python -I -B`` (isolated: no user site, no ``PYTHON*`` variables, no script dir on the path; no
  ``.pyc`` files), stdin from ``/dev/null``, stdout discarded, stderr kept in a file beside the
  working directory, and an environment of ``PATH`` and ``LANG`` only (no proxy or credential
  variables reach the program);
* its own session and process group (``start_new_session``); when the program ends, or when it runs
  past ``timeout_s`` of wall-clock time, the whole group is killed with ``SIGKILL``, so children it
  started (``subprocess.Popen(["sleep", "30"])``) do not outlive it. A child that moves itself to
  another session (``setsid``) escapes this;
* resource limits: address space ``memory_mb``, CPU time ``ceil(timeout_s) + 1`` seconds (then
  ``SIGXCPU``), files written at most 10 MB, no core dumps. ``RLIMIT_NPROC`` is not set: it counts
  every process of the user, not of the program. The limits are set by a small bootstrap
  interpreter that then ``exec``\\ s the program (limits survive ``exec``), not by a ``preexec_fn``,
  which is unsafe when the caller runs programs from several threads.

This is damage limitation for model-written test code, not a security sandbox: the program runs as
the calling user and can read and write what that user can. Run untrusted code in a container.

The status: ``"passed"`` (exit code 0), ``"timeout"`` (killed at the wall-clock limit or by the CPU
limit), ``"error"`` (the program does not compile: ``SyntaxError``/``IndentationError``/``TabError``;
or it died of a signal or a ``MemoryError``), ``"failed"`` (any other non-zero exit: a failed
``assert``, an exception raised by the tested code, ``sys.exit(1)``). Only ``"passed"`` counts for
pass@k; the others tell why not.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

_FILE_LIMIT_BYTES = 10 * 1024 * 1024
_DETAIL_CHARS = 500
_COMPILE_ERRORS = re.compile(r"(?:SyntaxError|IndentationError|TabError)\b")

# Sets the limits given on its command line, then replaces itself with the program's interpreter.
_BOOTSTRAP = """\
import os, resource, sys
memory, cpu, fsize, program = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for kind, soft, hard in ((resource.RLIMIT_AS, memory, memory), (resource.RLIMIT_CPU, cpu, cpu + 1),
                         (resource.RLIMIT_FSIZE, fsize, fsize), (resource.RLIMIT_CORE, 0, 0)):
    ceiling = resource.getrlimit(kind)[1]
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))
os.execv(sys.executable, [sys.executable, "-I", "-B", program])
"""


def _wait_unreaped(pid: int, deadline: float) -> bool:
    """Wait until process ``pid`` exits or ``deadline`` (monotonic) passes, leaving it unreaped so its
    process id (and with it the process group id) cannot be reused yet; ``True`` when it exited."""
    pause = 0.002
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.05)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left in the group
        os.killpg(pgid, signal.SIGKILL)


def _stderr_tail(path: str) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 8 * _DETAIL_CHARS))
        return f.read().decode("utf-8", errors="replace").strip()


def _detail(reason: str, stderr: str) -> str:
    if not reason:
        return stderr[-_DETAIL_CHARS:]
    room = _DETAIL_CHARS - len(reason) - 1
    return f"{reason}\n{stderr[-room:]}".strip() if stderr and room > 0 else reason[:_DETAIL_CHARS]


def run_program(program: str, *, timeout_s: float = 10.0, memory_mb: int = 1024) -> dict:
    """Run ``program`` (Python source) as described in the module docstring and return
    ``{"status": "passed" | "failed" | "timeout" | "error", "detail": the end of its stderr (at most
    500 characters), after the reason when it was killed}``."""
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if memory_mb < 1:
        raise ValueError(f"memory_mb must be at least 1, got {memory_mb}")
    cpu_seconds = math.ceil(timeout_s) + 1
    with tempfile.TemporaryDirectory(prefix="swiftkit-exec-", ignore_cleanup_errors=True) as root:
        workdir, stderr_path = os.path.join(root, "work"), os.path.join(root, "stderr.txt")
        os.mkdir(workdir)
        program_path = os.path.join(workdir, "program.py")
        with open(program_path, "w", encoding="utf-8") as f:
            f.write(program)
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        command = [sys.executable, "-I", "-B", "-c", _BOOTSTRAP, str(memory_mb * 1024 * 1024), str(cpu_seconds),
                   str(_FILE_LIMIT_BYTES), program_path]
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            exited = _wait_unreaped(proc.pid, time.monotonic() + timeout_s)
        finally:
            _kill_group(proc.pid)  # the program, if still running, and everything it started
            returncode = proc.wait()
        stderr_text = _stderr_tail(stderr_path)
    last_line = stderr_text.splitlines()[-1] if stderr_text else ""
    if not exited:
        return {"status": "timeout", "detail": _detail(f"ran past the {timeout_s:g} s time limit", stderr_text)}
    if returncode == 0:
        return {"status": "passed", "detail": _detail("", stderr_text)}
    if returncode == -signal.SIGXCPU:
        return {"status": "timeout", "detail": _detail(f"used more than {cpu_seconds} s of CPU time", stderr_text)}
    if returncode < 0:
        reason = f"killed by {signal.Signals(-returncode).name}"
        return {"status": "error", "detail": _detail(reason, stderr_text)}
    if _COMPILE_ERRORS.match(last_line) or last_line.startswith("MemoryError"):
        return {"status": "error", "detail": _detail("", stderr_text)}
    return {"status": "failed", "detail": _detail("" if stderr_text else f"exit code {returncode}", stderr_text)}


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from ``n`` samples of which ``c`` passed: the chance that at
    least one of ``k`` samples drawn without replacement passes, 1 - C(n-c, k) / C(n, k), computed
    as 1 - prod over i = n-c+1 .. n of (1 - k / i), which never forms the large binomials."""
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n (the number of samples), got n={n}")
    if n - c < k:  # every draw of k includes a passing sample
        return 1.0
    missing_all = 1.0
    for i in range(n - c + 1, n + 1):
        missing_all *= 1.0 - k / i
    return 1.0 - missing_all


# --- building the programs -----------------------------------------------------------------------

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.#-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.MULTILINE | re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3"}


def strip_code_fences(reply: str) -> str:
    """The code of a chat reply: the first fenced block tagged ``python`` (or ``py``, ``python3``),
    else the first untagged fenced block, else the whole reply. A block cut off before its closing
    fence runs to the end of the reply."""
    untagged = None
    for block in _FENCE.finditer(reply):
        tag = block.group(1).lower()
        if tag in _PYTHON_TAGS:
            return block.group(2)
        if not tag and untagged is None:
            untagged = block.group(2)
    return reply if untagged is None else untagged


def _code_of(reply: str) -> str:
    return strip_code_fences(reply) if "```" in reply else reply


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The HumanEval test program: ``prompt + completion``, the ``test`` code, ``check(entry_point)``.

    A completion in code fences is reduced to its code (:func:`strip_code_fences`). A completion that
    writes the whole function (a line ``def <entry_point>(`` at column 0) replaces the prompt's
    function: it follows the prompt's text before that function (its imports and helpers).
    """
    code = _code_of(completion)
    header = re.compile(rf"^def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
    if header.search(code):
        prompt_header = header.search(prompt)
        if prompt_header:
            preamble = prompt[:prompt_header.start()]
        else:
            preamble = "".join(line for line in prompt.splitlines(keepends=True)
                               if line.startswith(("import ", "from ")))
        body = preamble + code
    else:
        body = prompt + code
    return f"{body}\n{test}\ncheck({entry_point})\n"


def mbpp_program(code: str, test_list: list[str], test_setup_code: str = "") -> str:
    """The MBPP test program: ``test_setup_code`` (imports the tests or the code's annotations
    need), the solution ``code`` (fences stripped), then each assertion of ``test_list``."""
    parts = [test_setup_code, _code_of(code), *test_list]
    return "\n".join(part for part in parts if part.strip()) + "\n"
