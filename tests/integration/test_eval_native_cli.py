"""`swiftkit eval` with the native evaluators end to end on tiny models: a tuned model beats its base on the
multiple-choice set it was trained on (and the comparison report says so), evaluation during training,
the cache that makes a rerun continue, and `--eval_url` against a live `swiftkit deploy`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_deploy import free_port
from test_sft_cli import read_jsonl, run_sft

from swiftkit.cli.main import main
from tests.evaldata import GSM8K_ROWS, general_mcq_folder, write_jsonl

LETTERS = "ABCD"


def _chat_prompt(row: dict, subject: str) -> str:
    """The user turn the multiple-choice evaluator renders for a general_mcq row, 0-shot (docs/eval-export.md)."""
    options = "\n".join(f"{k}. {row[k]}" for k in LETTERS)
    return (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
            f"{row['question']}\n{options}\nAnswer:")


@pytest.fixture(scope="module")
def mcq(tmp_path_factory):
    root = tmp_path_factory.mktemp("mcq")
    folder = general_mcq_folder(root)
    import csv

    with (folder / "quiz_val.csv").open() as f:
        rows = list(csv.DictReader(f))
    train = [{"messages": [{"role": "user", "content": _chat_prompt(r, "quiz")},
                           {"role": "assistant", "content": r["answer"]}]} for r in rows]
    return folder, write_jsonl(root / "train.jsonl", train * 4), rows


@pytest.fixture(scope="module")
def tuned(tiny_model_dir, mcq, tmp_path_factory):
    """A tiny llama LoRA-trained to answer the three general_mcq questions with their letters."""
    _, train, _ = mcq
    out = tmp_path_factory.mktemp("tuned")
    return run_sft(tiny_model_dir("llama", "chatml"), train, out, "--max_steps", "40", "--learning_rate", "5e-3",
                   "--lora_rank", "16", "--save_steps", "40", "--per_device_train_batch_size", "3")


def _only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir() and p.name != "cache"]
    return run


def test_tuned_model_prefers_the_trained_options_and_the_report_shows_the_gain(tuned, mcq, tmp_path):
    folder, _, _ = mcq
    out = tmp_path / "eval"
    assert main(["eval", "--adapters", str(tuned), "--compare", "base", "--eval_dataset", f"general_mcq={folder}",
                 "--eval_output_dir", str(out)]) == 0
    run = _only_run(out)
    base = json.loads((run / "base" / "general_mcq-local" / "metrics.json").read_text())
    tuned_m = json.loads((run / "tuned" / "general_mcq-local" / "metrics.json").read_text())
    assert tuned_m["acc"] == 1.0 and tuned_m["num_samples"] == 3
    assert base["acc"] < tuned_m["acc"]
    samples = read_jsonl(run / "tuned" / "general_mcq-local" / "samples.jsonl")
    assert [s["pred"] for s in samples] == [s["gold"] for s in samples] == [1, 2, 0]
    report = json.loads((run / "report.json").read_text())
    task = report["tasks"]["general_mcq"]["models"]["tuned"]
    assert task["delta"] == pytest.approx(1.0 - base["acc"]) and task["delta"] > 0
    md = (run / "report.md").read_text()
    assert "| general_mcq |" in md and f"{1.0:.3f} (+{1.0 - base['acc']:.3f}" in md
    assert (run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((run / "summary.json").read_text())
    assert [m["label"] for m in summary["models"]] == ["base", "tuned"]
    assert summary["results"]["tuned"]["general_mcq=" + str(folder)]["acc"] == 1.0


def test_rerunning_an_evaluation_takes_the_scored_items_from_the_cache(tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    argv = ["eval", "--model", str(tiny_model_dir("llama", "chatml")), "--eval_dataset", f"gsm8k={data}",
            "--max_new_tokens", "8", "--eval_few_shot", "0", "--eval_output_dir", str(tmp_path / "eval")]
    assert main(argv) == 0
    first = capsys.readouterr().err
    assert "from the cache" not in first
    (cache,) = (tmp_path / "eval" / "cache").glob("gsm8k-*.jsonl")
    assert len(read_jsonl(cache)) == 3
    assert main(argv) == 0
    second = capsys.readouterr().err
    assert "gsm8k: 3 of 3 items from the cache" in second
    runs = sorted(p for p in (tmp_path / "eval").iterdir() if p.name != "cache")
    a, b = (json.loads((r / "gsm8k-local" / "metrics.json").read_text()) for r in runs)
    assert a == b


def test_eval_during_training_logs_benchmark_scores_at_the_evaluation_steps(tiny_model_dir, mcq, tmp_path):
    folder, train, _ = mcq
    gsm = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    run = run_sft(tiny_model_dir("llama", "chatml"), train, tmp_path / "out", "--max_steps", "4", "--eval_steps", "2",
                  "--save_steps", "4", "--val_dataset", str(train),
                  "--eval_benchmarks", f"general_mcq={folder}", f"gsm8k={gsm}", "--eval_limit", "2",
                  "--eval_few_shot", "0", "--metric_for_best_model", "general_mcq_acc", "--report_to", "tensorboard")
    evals = [r for r in read_jsonl(run / "logging.jsonl") if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for r in evals:
        assert 0.0 <= r["eval_general_mcq_acc"] <= 1.0 and "eval_general_mcq_acc_norm" in r
        assert "eval_gsm8k_acc" in r and "eval_gsm8k_extracted" in r
    assert (run / "benchmarks.png").read_bytes()[:4] == b"\x89PNG"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(run / "runs"), size_guidance={"scalars": 0}).Reload()
    assert [e.step for e in board.Scalars("eval/general_mcq_acc")] == [2, 4]  # TensorBoard has them too


def test_unknown_local_benchmark_and_missing_files_fail_before_loading(tiny_model_dir, tmp_path, capsys):
    model = str(tiny_model_dir("llama", "chatml"))
    assert main(["eval", "--model", model, "--eval_dataset", "mmluu=x.jsonl",
                 "--eval_output_dir", str(tmp_path / "e")]) == 2
    assert "'mmluu' is not one (did you mean 'mmlu'?)" in capsys.readouterr().err
    assert main(["eval", "--model", model, "--eval_dataset", f"mmlu={tmp_path / 'none.jsonl'}",
                 "--eval_output_dir", str(tmp_path / "e")]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


# -- a live `swiftkit deploy` ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def deploy_server(tuned):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swiftkit.cli.main", "deploy", "--adapters", str(tuned), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
    yield url, tuned.name
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_eval_url_against_a_live_deploy_gives_the_in_process_scores(deploy_server, tuned, mcq, tmp_path):
    url, served = deploy_server
    folder, _, _ = mcq
    gsm = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    common = ["--eval_dataset", f"general_mcq={folder}", f"gsm8k={gsm}", "--eval_few_shot", "0",
              "--max_new_tokens", "16", "--eval_chat_template", "false", "--eval_cache", "false"]
    assert main(["eval", "--adapters", str(tuned), *common, "--eval_output_dir", str(tmp_path / "local")]) == 0
    assert main(["eval", "--eval_url", url, "--eval_model", served, *common,
                 "--eval_output_dir", str(tmp_path / "remote")]) == 0
    local, remote = (json.loads((_only_run(tmp_path / d) / "summary.json").read_text())["results"]
                     for d in ("local", "remote"))
    assert remote.keys() == local.keys()
    for name in local:
        for metric, value in local[name].items():
            assert remote[name][metric] == pytest.approx(value, abs=1e-6), (name, metric)
    replies = [read_jsonl(_only_run(tmp_path / d) / "gsm8k-local" / "samples.jsonl") for d in ("local", "remote")]
    assert [s["reply"] for s in replies[0]] == [s["reply"] for s in replies[1]]
    lls = [read_jsonl(_only_run(tmp_path / d) / "general_mcq-local" / "samples.jsonl") for d in ("local", "remote")]
    for a, b in zip(*lls):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-3)


def test_evalscope_backend_compares_base_and_tuned_in_the_same_report(tuned, mcq, tmp_path):
    folder, _, _ = mcq
    env = Path(__file__).resolve().parents[2] / ".venv-evalscope"  # built by `make test`, created here if missing
    out = tmp_path / "evalscope"
    assert main(["eval", "--adapters", str(tuned), "--compare", "base", "--eval_backend", "evalscope",
                 "--eval_dataset", f"general_mcq={folder}", "--evalscope_env", str(env), "--max_new_tokens", "4",
                 "--eval_output_dir", str(out)]) == 0
    run = _only_run(out)
    replies = {}
    for label in ("base", "tuned"):
        metrics = json.loads((run / label / "general_mcq-local" / "metrics.json").read_text())
        samples = read_jsonl(run / label / "general_mcq-local" / "samples.jsonl")
        assert metrics["num_samples"] == len(samples) == 3
        assert metrics["accuracy"] == pytest.approx(sum(s["score"]["accuracy"] for s in samples) / 3, abs=1e-4)
        replies[label] = [s["reply"] for s in samples]
    assert replies["base"] != replies["tuned"]  # the server ran each model as it is: adapters off, then on
    report = json.loads((run / "report.json").read_text())
    assert report["tasks"]["general_mcq"]["metric"] == "accuracy"
    assert set(report["tasks"]["general_mcq"]["models"]) == {"base", "tuned"}
