"""`swiftkit infer` end to end through the console script on a checkpoint trained by `swiftkit sft`."""

from __future__ import annotations

import json
import subprocess
import sys

from test_sft_cli import write_jsonl

from swiftkit.cli.main import main

SWIFTKIT = [sys.executable, "-m", "swiftkit.cli.main"]


def test_batch_mode_writes_predictions(trained, tmp_path):
    val = write_jsonl(tmp_path / "eval.jsonl", [
        {"messages": [{"role": "user", "content": "Hello!"}]},
        {"query": "What is 1+1?", "response": "2"},
    ])
    preds = tmp_path / "preds.jsonl"
    proc = subprocess.run(
        SWIFTKIT + ["infer", "--adapters", str(trained), "--val_dataset", str(val), "--result_path",
                    str(preds), "--max_new_tokens", "8"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 2
    assert rows[0]["labels"] is None and rows[1]["labels"] == "2"
    assert all(isinstance(r["response"], str) for r in rows)
    assert rows[1]["messages"] == [{"role": "user", "content": "What is 1+1?"}]


def test_interactive_mode_over_stdin(trained):
    proc = subprocess.run(
        SWIFTKIT + ["infer", "--adapters", str(trained), "--max_new_tokens", "4", "--stream", "true"],
        input="Hello!\nclear\nWhat is 1+1?\nexit\n", capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("<<< ") >= 3


def test_infer_without_model_or_adapters_is_a_clear_error(capsys):
    assert main(["infer"]) == 2
    assert "--model or --adapters" in capsys.readouterr().err
