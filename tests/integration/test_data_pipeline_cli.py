"""`swiftkit sft` with --streaming, --packing, --dataset_num_proc and the encoded-data cache."""

from __future__ import annotations

import json

import pytest
from test_sft_cli import ROWS, run_sft, write_jsonl

from swiftkit.cli.main import main


@pytest.fixture
def model(tiny_model_dir):
    return str(tiny_model_dir("llama", "chatml"))


def logged(run, key):
    rows = [json.loads(line) for line in (run / "logging.jsonl").read_text().splitlines() if line.strip()]
    return [r[key] for r in rows if key in r]


def test_streaming_trains_for_max_steps_over_a_mixed_stream(model, tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", ROWS * 3)
    b = write_jsonl(tmp_path / "b.jsonl", [{"query": f"q{i}", "response": f"r{i}"} for i in range(5)]
                    + [{"query": "bad"}])
    run = run_sft(model, a, tmp_path / "out", "--max_steps", "4", "--streaming", "true",
                  "--dataset", str(a), f"{b}#2.0", "--skip_bad_rows", "true")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["num_train_rows"] is None
    assert json.loads((run / "train_result.json").read_text())["global_step"] == 4
    assert len(logged(run, "loss")) >= 4


def test_streaming_bad_row_stops_the_run_naming_it(model, tmp_path, capsys):
    data = write_jsonl(tmp_path / "s.jsonl", ROWS + [{"query": "no reply"}] + ROWS)
    assert main(["sft", "--model", model, "--dataset", str(data), "--output_dir", str(tmp_path / "out"),
                 "--max_steps", "6", "--streaming", "true", "--per_device_train_batch_size", "2",
                 "--report_to", "none"]) == 2
    err = capsys.readouterr().err
    assert f"swiftkit sft: error: {data}:5: missing 'response'" in err
    assert not list((tmp_path / "out").glob("*/train_result.json"))  # the run is not complete


@pytest.mark.parametrize("flags, message", [
    (["--streaming", "true"], "--streaming needs --max_steps"),
    (["--streaming", "true", "--max_steps", "2", "--packing", "true"], "does not work with --streaming"),
    (["--packing", "true", "--lazy_tokenize", "true"], "drop --lazy_tokenize"),
    (["--dataset_num_proc", "0"], "--dataset_num_proc must be >= 1"),
    (["--columns", "{not json"], "--columns is not valid JSON"),
])
def test_incompatible_data_flags_are_config_errors(model, tmp_path, capsys, flags, message):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    argv = ["sft", "--model", model, "--dataset", str(data), "--output_dir", str(tmp_path / "out"), *flags]
    if "--max_steps" not in flags and "--streaming" in flags:
        argv += ["--num_train_epochs", "1", "--max_steps", "-1"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_packing_fills_rows_and_trains(model, tmp_path, capsys):
    data = write_jsonl(tmp_path / "p.jsonl", ROWS * 8)
    run = run_sft(model, data, tmp_path / "out", "--max_steps", "2", "--packing", "true", "--max_length", "128")
    err = capsys.readouterr().err
    assert "--packing: 32 rows in " in err
    packed_rows = int(err.split("--packing: 32 rows in ")[1].split()[0])
    assert packed_rows < 32
    assert json.loads((run / "manifest.json").read_text())["num_train_rows"] == 32
    assert all(loss > 0 for loss in logged(run, "loss"))


def test_num_proc_and_cache_give_the_same_training(model, tmp_path, capsys):
    data = write_jsonl(tmp_path / "c.jsonl", ROWS * 4)
    cache = tmp_path / "cache"
    common = ["--max_steps", "2", "--cache_dir", str(cache), "--seed", "3"]
    first = run_sft(model, data, tmp_path / "one", *common, "--dataset_num_proc", "2")
    entries = list((cache / "encoded").iterdir())
    assert len(entries) == 1  # written once
    second = run_sft(model, data, tmp_path / "two", *common)  # a cache hit
    assert list((cache / "encoded").iterdir()) == entries
    third = run_sft(model, data, tmp_path / "three", *common, "--load_from_cache_file", "false")
    losses = [logged(r, "loss") for r in (first, second, third)]
    assert losses[0] == losses[1] == losses[2]
    changed = run_sft(model, data, tmp_path / "four", *common, "--system", "Be terse.")
    assert len(list((cache / "encoded").iterdir())) == 2  # another template: another entry
    assert logged(changed, "loss") != losses[0]
