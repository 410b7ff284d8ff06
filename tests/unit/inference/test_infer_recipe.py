"""InferRecipe end to end on a tiny LoRA checkpoint: batch results on disk, interactive chat."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hosts import HOST

from swiftkit.config import InferConfig
from swiftkit.core.choices import ChoiceError
from swiftkit.inference.replies import split_prompt
from swiftkit.recipes.infer import InferRecipe

ROWS = [
    {"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi there."}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"},
                  {"role": "assistant", "content": "4"}]},
    {"messages": [{"role": "user", "content": "Write a poem about the sea."}]},
    {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                  {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]},
    {"messages": [{"role": "user", "content": "What is the capital of France?"}]},
]


def recipe(**fields) -> InferRecipe:
    r = InferRecipe(InferConfig.from_flat({"max_new_tokens": 6, **fields}), HOST)
    r.setup()
    return r


@pytest.fixture
def val_file(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def test_split_prompt_takes_the_final_assistant_reply_as_label():
    assert split_prompt(ROWS[0]["messages"]) == (ROWS[0]["messages"][:1], "Hi there.")
    assert split_prompt(ROWS[2]["messages"]) == (ROWS[2]["messages"], None)
    assert split_prompt(ROWS[3]["messages"]) == (ROWS[3]["messages"][:3], "d")


def test_batch_mode_writes_one_json_line_per_row(lora_ckpt, val_file, tmp_path, capsys):
    out = tmp_path / "results" / "out.jsonl"
    r = recipe(adapters=[str(lora_ckpt)], val_dataset=[str(val_file)], result_path=str(out), max_batch_size=2)
    result = r.run()
    assert result == {"result_path": str(out), "num_rows": len(ROWS)}
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(ROWS)
    assert [line["labels"] for line in lines] == ["Hi there.", "4", None, "d", None]
    assert lines[1]["messages"] == ROWS[1]["messages"][:2]
    assert all(set(line) == {"messages", "response", "labels"} for line in lines)
    assert all(isinstance(line["response"], str) for line in lines)
    # replies are what the engine gives each prompt alone (batching changes nothing for greedy)
    alone = [r.engine.generate([line["messages"]], max_new_tokens=6)[0] for line in lines]
    assert [line["response"] for line in lines] == alone
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.jsonl"]  # no temp file left behind
    err = capsys.readouterr().err
    assert "5/5" in err and "infer: 5 rows in" in err


def test_batch_mode_default_path_is_next_to_the_adapters(make_lora_run, val_file):
    ckpt = make_lora_run()
    result = recipe(adapters=[str(ckpt)], val_dataset=[str(val_file)]).run()
    path = result["result_path"]
    assert path.startswith(str(ckpt / "infer_result")) and path.endswith(".jsonl")
    assert len(Path(path).read_text(encoding="utf-8").splitlines()) == len(ROWS)


def test_interactive_chat_keeps_history_and_clears_it(lora_ckpt):
    r = recipe(adapters=[str(lora_ckpt)])
    stdout = io.StringIO()
    result = r.run(stdin=io.StringIO("hello\nhow are you\nclear\nhello\nexit\nnever read\n"), stdout=stdout)
    assert result == {"turns": 3}
    text = stdout.getvalue()
    assert text.count("<<< ") == 5
    first = r.engine.generate([[{"role": "user", "content": "hello"}]], max_new_tokens=6)[0]
    second = r.engine.generate([[{"role": "user", "content": "hello"}, {"role": "assistant", "content": first},
                                 {"role": "user", "content": "how are you"}]], max_new_tokens=6)[0]
    assert f"<<< {first}\n<<< {second}\n<<< (history cleared)\n<<< {first}\n<<< " in text


def test_interactive_multi_line_messages_and_reset_system(lora_ckpt):
    r = recipe(adapters=[str(lora_ckpt)])
    stdout = io.StringIO()
    script = ('first line \\\nsecond line\n'
              '"""\nblock one\n\nblock three\n"""\n'
              'reset-system Be brief.\nhello\nreset-system\nhello\n')
    assert r.run(stdin=io.StringIO(script), stdout=stdout) == {"turns": 4}
    text = stdout.getvalue()

    def reply(*messages):
        return r.engine.generate([list(messages)], max_new_tokens=6)[0]

    first = reply({"role": "user", "content": "first line \nsecond line"})
    second = reply({"role": "user", "content": "first line \nsecond line"}, {"role": "assistant", "content": first},
                   {"role": "user", "content": "block one\n\nblock three"})
    system = reply({"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"})
    plain = reply({"role": "user", "content": "hello"})
    assert (f"<<< {first}\n<<< {second}\n<<< (system prompt set; history cleared)\n<<< {system}\n"
            f"<<< (system prompt reset to the default; history cleared)\n<<< {plain}\n") in text


def test_interactive_streaming_ends_cleanly_at_end_of_input(lora_ckpt):
    r = recipe(adapters=[str(lora_ckpt)], stream=True)
    stdout = io.StringIO()
    assert r.run(stdin=io.StringIO("hello\n\n"), stdout=stdout) == {"turns": 1}
    reply = r.engine.generate([[{"role": "user", "content": "hello"}]], max_new_tokens=6)[0]
    assert stdout.getvalue().endswith(f"<<< {reply}\n<<< <<< \n")


def test_unknown_backend_is_a_clear_error_listing_valid_backends(lora_ckpt):
    with pytest.raises(ChoiceError, match=r"unknown --infer_backend 'vlm' \(did you mean 'vllm'\?\); valid --infer_backend values: transformers, vllm$"):
        recipe(adapters=[str(lora_ckpt)], infer_backend="vlm")
