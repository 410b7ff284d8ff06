"""Running generated programs (real child interpreters), pass@k, and the HumanEval / MBPP programs."""

import math
import os
import time
from fractions import Fraction

import pytest

from swiftkit.evaluate.code_exec import (
    humaneval_program,
    mbpp_program,
    pass_at_k,
    run_program,
    strip_code_fences,
)

# --- run_program ---------------------------------------------------------------------------------


def test_passing_program():
    assert run_program("x = [i * i for i in range(5)]\nassert sum(x) == 30\n") == {"status": "passed", "detail": ""}


def test_failed_assertion_reports_its_traceback():
    result = run_program("assert 1 + 1 == 3, 'arithmetic is off'\n")
    assert result["status"] == "failed"
    assert result["detail"].endswith("AssertionError: arithmetic is off")


def test_other_nonzero_exits_fail():
    assert run_program("raise ValueError('wrong type')\n")["status"] == "failed"
    assert run_program("import sys\nsys.exit(3)\n") == {"status": "failed", "detail": "exit code 3"}


def test_syntax_error_is_an_error():
    result = run_program("def f(:\n    pass\n")
    assert result["status"] == "error"
    assert "SyntaxError" in result["detail"]
    assert run_program("def f():\nreturn 1\n")["status"] == "error"   # IndentationError


def test_detail_keeps_the_last_500_characters_of_stderr():
    result = run_program("import sys\nsys.stderr.write('x' * 2000 + 'END')\nsys.exit(1)\n")
    assert result["status"] == "failed"
    assert len(result["detail"]) == 500 and result["detail"].endswith("xEND")


@pytest.mark.serial  # timed: run alone, not beside another test
def test_infinite_loop_times_out_quickly():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", timeout_s=1)
    elapsed = time.monotonic() - start
    assert result["status"] == "timeout"
    assert "1 s" in result["detail"]
    assert 1.0 <= elapsed < 3.0


def test_memory_bomb_does_not_pass():
    result = run_program("block = bytearray(2 * 1024 ** 3)\nassert len(block) > 0\n", memory_mb=256)
    assert result["status"] == "error"
    assert "MemoryError" in result["detail"]


def _still_running(pid: int) -> bool:
    """Whether process ``pid`` is a live (not zombie) ``sleep 30``; a reused pid does not count."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return cmdline == b"sleep\x0030\x00" and state != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _still_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


SPAWN_SLEEP = "import subprocess, sys\nchild = subprocess.Popen(['sleep', '30'])\nprint(child.pid, file=sys.stderr, flush=True)\n"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_children_do_not_outlive_the_program():
    result = run_program(SPAWN_SLEEP)
    assert result["status"] == "passed"
    pid = int(result["detail"])
    try:
        assert _gone_within(pid, 2.0), "the program's child survived it"
    finally:
        if _still_running(pid):
            os.kill(pid, 9)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_timeout_kills_the_children_too():
    result = run_program(SPAWN_SLEEP + "import time\nwhile True:\n    time.sleep(0.1)\n", timeout_s=1)
    assert result["status"] == "timeout"
    pid = int(result["detail"].splitlines()[-1])
    try:
        assert _gone_within(pid, 2.0), "the timed-out program's child survived it"
    finally:
        if _still_running(pid):
            os.kill(pid, 9)


def test_runs_in_a_removed_temporary_directory_with_a_minimal_environment(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("SWIFTKIT_TEST_TOKEN", "not-for-the-program")
    program = ("import os, sys\nprint(os.getcwd(), file=sys.stderr)\n"
               "print(' '.join(sorted(os.environ)), file=sys.stderr)\nopen('scratch.txt', 'w').write('x')\n")
    result = run_program(program)
    assert result["status"] == "passed"
    cwd, names = result["detail"].splitlines()
    assert os.path.basename(os.path.dirname(cwd)).startswith("swiftkit-exec-")
    assert cwd != os.getcwd()
    assert not os.path.exists(cwd)
    assert "HTTPS_PROXY" not in names.split() and "SWIFTKIT_TEST_TOKEN" not in names.split()
    assert "PATH" in names.split()


def test_bad_limits_are_rejected():
    with pytest.raises(ValueError, match="timeout_s"):
        run_program("pass", timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        run_program("pass", memory_mb=0)


# --- pass@k --------------------------------------------------------------------------------------

def _exact_pass_at_k(n, c, k):
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


@pytest.mark.parametrize("n, c, k, expected", [
    (10, 3, 1, 0.3),          # pass@1 is c / n
    (4, 1, 2, 0.5),           # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (5, 0, 3, 0.0),
    (5, 3, 3, 1.0),           # only 2 failing samples: any 3 include a pass
    (1, 1, 1, 1.0),
])
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_matches_exact_binomials_for_large_n():
    for n, c, k in ((200, 10, 100), (200, 1, 10), (1000, 37, 500)):
        assert pass_at_k(n, c, k) == pytest.approx(float(_exact_pass_at_k(n, c, k)), rel=1e-9)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 0)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)


# --- building programs ---------------------------------------------------------------------------

def test_strip_code_fences():
    assert strip_code_fences("no fences here") == "no fences here"
    reply = "Run:\n```bash\npip install x\n```\nThen:\n```python\nprint(1)\n```\nand\n```py\nprint(2)\n```"
    assert strip_code_fences(reply) == "print(1)\n"          # the first python block, not the bash one
    assert strip_code_fences("Code:\n```\nx = 1\n```\n") == "x = 1\n"
    assert strip_code_fences("```Python3 \ny = 2\n```") == "y = 2\n"
    assert strip_code_fences("```python\ncut = 'off at the token limit'") == "cut = 'off at the token limit'"
    assert strip_code_fences("```bash\nls\n```") == "```bash\nls\n```"   # no python block: the text


PROMPT = ('from typing import List\n\n\ndef _total(xs):\n    return sum(xs)\n\n\n'
          'def add_all(xs: List[int]) -> int:\n    """The sum of xs."""\n')
TEST = "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n    assert candidate([]) == 0\n"


def test_humaneval_program_layout():
    program = humaneval_program(PROMPT, "    return _total(xs)\n", TEST, "add_all")
    assert program == PROMPT + "    return _total(xs)\n" + "\n" + TEST + "\ncheck(add_all)\n"


@pytest.mark.parametrize("completion, status", [
    ("    return _total(xs)\n", "passed"),                                    # body only
    ("def add_all(xs: List[int]) -> int:\n    return _total(xs)\n", "passed"),  # whole function: needs the prompt's import and helper
    ("Sure!\n```python\ndef add_all(xs: List[int]) -> int:\n    return sum(xs)\n```\nIt sums.", "passed"),
    ("    return len(xs)\n", "failed"),
    ("    return sum(xs\n", "error"),
])
def test_humaneval_programs_run(completion, status):
    assert run_program(humaneval_program(PROMPT, completion, TEST, "add_all"), timeout_s=5)["status"] == status


def test_humaneval_whole_function_keeps_only_the_preamble_of_the_prompt():
    completion = "def add_all(xs):\n    return 0\n"
    program = humaneval_program(PROMPT, completion, TEST, "add_all")
    assert program.startswith(PROMPT[:PROMPT.index("def add_all")] + completion)
    assert program.count("def add_all") == 1


def test_mbpp_program():
    code = "```python\ndef first(xs: List[int]) -> int:\n    return xs[0]\n```"
    tests = ["assert first([3, 1]) == 3", "assert first([7]) == 7"]
    program = mbpp_program(code, tests, "from typing import List")
    assert program == ("from typing import List\ndef first(xs: List[int]) -> int:\n    return xs[0]\n\n"
                       "assert first([3, 1]) == 3\nassert first([7]) == 7\n")
    assert run_program(program)["status"] == "passed"
    assert run_program(mbpp_program("def first(xs):\n    return xs[-1]\n", tests))["status"] == "failed"
