"""`swiftkit data lint` and `swiftkit data preview` on real files and a tiny tokenizer."""

from __future__ import annotations

import json

import pytest

from swiftkit.cli.main import main

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]}
ROWS = [
    GOOD,
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]},  # 2: empty
    GOOD,  # 3: duplicate of 1
    {"query": "Tell me a long story " * 30, "response": "Once upon a time."},  # 4: too long with --max_length
    {"messages": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "?"},
                  {"role": "assistant", "content": "ok"}]},  # 5: role order
    {"conversations": [{"from": "human", "value": "Hi"}]},  # 6: no reply
    {"query": 7, "response": "r"},  # 7: non-string content
]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_lint_reports_every_problem_with_place_kind_and_counts(data, capsys):
    assert main(["data", "lint", "--dataset", str(data)]) == 1
    out = capsys.readouterr().out.splitlines()
    problems = [line for line in out if line.startswith(f"{data}:")]
    assert problems == [
        f"{data}:2: error: messages[1] (assistant): empty content [empty_content]",
        f"{data}:3: warning: same content as {data}:1 [duplicate]",
        f"{data}:5: error: messages[0] (assistant): a conversation must start with a user (or system) message [role_order]",
        f"{data}:6: error: the conversation ends with a user message; it must end with an assistant reply to train on [missing_reply]",
        f"{data}:7: error: 'query' must be a string, got int [wrong_type]",
    ]
    assert "  error   empty_content       1" in out
    assert out[-1].startswith("4 errors, 1 warning in 7 rows (3 usable)")


def test_lint_with_model_checks_tokenized_length(data, tiny_model_dir, capsys):
    model = str(tiny_model_dir("llama", "chatml"))
    assert main(["data", "lint", "--dataset", str(data), "--model", model, "--max_length", "64"]) == 1
    out = capsys.readouterr().out
    assert f"{data}:4: warning: " in out and "over max_length 64; the row will be skipped [too_long]" in out
    assert "tokenized with the chat template" in out


def test_lint_clean_data_exits_zero_and_max_problems_cuts_the_list(tmp_path, data, capsys):
    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps(GOOD) + "\n" + json.dumps({"query": "q", "response": "r"}) + "\n")
    assert main(["data", "lint", "--dataset", str(clean)]) == 0
    assert capsys.readouterr().out.strip().startswith("0 errors, 0 warnings in 2 rows (2 usable)")
    assert main(["data", "lint", "--dataset", str(data), "--max_problems", "2"]) == 1
    assert "... 3 more (raise --max_problems to see them)" in capsys.readouterr().out


def test_lint_pretraining_text(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "fine"}\n{"text": ""}\n{"body": "x"}\n')
    assert main(["data", "lint", "--dataset", str(corpus), "--pretrain", "true"]) == 1
    out = capsys.readouterr().out
    assert f"{corpus}:2: error: 'text' is empty [empty_content]" in out
    assert f"{corpus}:3: error: pretraining data needs a 'text'" in out


def test_lint_missing_file_is_one_clear_error(tmp_path, capsys):
    assert main(["data", "lint", "--dataset", str(tmp_path / "nope.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == f"swiftkit data lint: error: {tmp_path / 'nope.jsonl'}: file not found"


def test_preview_marks_exactly_the_trained_tokens(data, tiny_model_dir, capsys):
    model = str(tiny_model_dir("llama", "chatml"))
    assert main(["data", "preview", "--dataset", str(data), "--model", model, "--show_tokens", "true"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"row 0: {data}:1")
    rendered = out.split("\n\n", 1)[1].split("\n\n  pos")[0]
    assert "[[Hello there<|im_end|>]]" in rendered
    assert rendered.count("[[") == 1 and rendered.startswith("<|im_start|>user")  # the prompt is not trained
    header = out.splitlines().index("  pos      id  loss  token")
    table = out.splitlines()[header + 1:]
    trained = [line for line in table if line.split()[2] == "yes"]
    assert len(trained) == int(out.splitlines()[1].split(",")[1].split()[0]) > 0
    assert len(trained) < len(table)  # the prompt tokens are listed without loss


def test_preview_index_past_the_end_and_unknown_action(data, tiny_model_dir, capsys):
    model = str(tiny_model_dir("llama", "chatml"))
    assert main(["data", "preview", "--dataset", str(data), "--model", model, "--index", "9"]) == 2
    assert "--index 9 is past the last usable row (3 loaded)" in capsys.readouterr().err
    assert main(["data", "lnit"]) == 2
    assert "did you mean 'lint'" in capsys.readouterr().err
    assert main(["data", "preview", "--dataset", str(data)]) == 2
    assert "needs --model" in capsys.readouterr().err


def test_lint_checks_rows_as_an_alignment_method_reads_them(tmp_path, capsys, tiny_model_dir):
    rows = [
        {"prompt": "Hi", "chosen": "Hello there!", "rejected": "Go away."},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"prompt": "Hi", "chosen": "Same", "rejected": "Same"},
        {"prompt": "Long", "chosen": "ok", "rejected": "word " * 60},
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "lint", "--dataset", str(data)]) == 0  # as SFT data every row is usable
    capsys.readouterr()
    assert main(["data", "lint", "--dataset", str(data), "--rlhf_type", "dpo", "--model",
                 str(tiny_model_dir("llama", "chatml")), "--max_length", "40"]) == 1
    out = capsys.readouterr().out
    assert f"{data}:2: error: not a preference pair" in out
    assert f"{data}:3: error: the chosen and rejected replies are identical" in out
    # the rejected reply is what makes row 4 too long: both replies are encoded
    assert f"{data}:4: warning:" in out and "over max_length 40" in out
    assert "2 errors, 1 warning in 4 rows (2 usable)" in out
    assert main(["data", "lint", "--dataset", str(data), "--rlhf_type", "kto"]) == 1
    assert "in 4 rows (3 usable)" in capsys.readouterr().out
