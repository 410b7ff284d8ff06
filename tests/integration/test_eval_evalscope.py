"""evalscope 1.14.1, in its own environment (``.venv-evalscope`` at the repository root, which
``make test`` creates), evaluating tiny models served by :func:`serve_in_background` on local
``general_mcq`` and ``general_qa`` folders, offline.

Two served models: the random tiny llama (its replies are arbitrary text, compared with what the
server answers the official ``openai`` client), and the same model rewired into a bigram model that
replies ``B`` to every prompt, so the scores have hand-computed values: accuracy 2/4 on four
questions whose answers are B, C, B, A, and BLEU-1 / ROUGE-1 recall 1/3 on three references of
which one is ``B`` (BLEU-1 is 1 only when NLTK's punkt_tab model loads offline; evalscope scores
BLEU 0 when it cannot).
"""

from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from hosts import templates

from swiftkit.evaluate.evalscope_backend import EvalscopeRunError, evalscope_python, run_evalscope
from swiftkit.serving.background import serve_in_background

REPO = Path(__file__).resolve().parents[2]
ENV_DIR = REPO / ".venv-evalscope"
MAX_TOKENS = 6
MCQ_ROWS = [
    {"id": 1, "question": "What is 2+2?", "A": "3", "B": "4", "C": "5", "D": "6", "answer": "B"},
    {"id": 2, "question": "Which color is the sky?", "A": "green", "B": "red", "C": "blue", "D": "black", "answer": "C"},
    {"id": 3, "question": "How many legs has a cat?", "A": "2", "B": "4", "C": "6", "D": "8", "answer": "B"},
    {"id": 4, "question": "The capital of France?", "A": "Paris", "B": "Rome", "C": "Berlin", "D": "Madrid", "answer": "A"},
]
QA_ROWS = [
    {"query": "Which letter comes after A?", "response": "B"},
    {"query": "What is the capital of France?", "response": "Paris is the capital of France."},
    {"query": "Count to three.", "response": "1 2 3"},
]


@pytest.fixture(scope="module")
def evalscope() -> str:
    return evalscope_python(str(ENV_DIR))  # creates the environment when it is missing (minutes)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("evalscope-data")
    mcq, qa = root / "mcq", root / "qa"
    mcq.mkdir()
    qa.mkdir()
    for split in ("dev", "val"):
        with (mcq / f"exam_{split}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(MCQ_ROWS[0]))
            writer.writeheader()
            writer.writerows(MCQ_ROWS)
    (qa / "default.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QA_ROWS), encoding="utf-8")
    return [
        {"name": "my_mcq", "evalscope": "general_mcq", "local_path": str(mcq), "subsets": ["exam"], "args": {}},
        {"name": "my_qa", "evalscope": "general_qa", "local_path": str(qa), "subsets": None, "args": {}},
    ]


def tiny_engine(tiny: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.inference import TransformersEngine
    from swiftkit.templates import get_template

    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    return TransformersEngine(model, get_template(AutoTokenizer.from_pretrained(tiny), registry=templates()))


def fixed_reply_engine(tiny: Path, word: str):
    """The tiny model rewired into a bigram model that replies ``word`` to any chatml prompt: attention
    and MLP outputs are zeroed (the last hidden state is the normalised embedding of the current
    token) and an untied head maps the prompt's last token to ``word``'s tokens, then to <|im_end|>."""
    import torch

    engine = tiny_engine(tiny)
    model, tok = engine.model, engine.template.tokenizer
    chain = [engine.prompt_ids([{"role": "user", "content": "x"}])[-1], *tok.encode(word, add_special_tokens=False),
             tok.convert_tokens_to_ids("<|im_end|>")]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        normed = model.model.norm(model.model.embed_tokens.weight.clone())
        head = torch.nn.Linear(normed.shape[1], normed.shape[0], bias=False)
        head.weight.zero_()
        for prev, nxt in zip(chain, chain[1:]):
            head.weight[nxt] = normed[prev] * 4
        model.lm_head = head
        model.config.tie_word_embeddings = False
    assert engine.generate([[{"role": "user", "content": "anything at all"}]], max_new_tokens=8) == [word]
    return engine


def evaluate(evalscope, url, datasets, tmp_path):
    return run_evalscope(python=evalscope, base_url=url, model="tiny", api_key="sk-evalscope", datasets=datasets,
                         work_dir=tmp_path / "evalscope", limit=None,
                         generation={"max_tokens": MAX_TOKENS, "temperature": 0.0}, few_shot=None, timeout_s=240)


def test_replies_are_the_served_models_and_every_row_is_scored(evalscope, datasets, tiny_model_dir, tmp_path):
    engine = tiny_engine(tiny_model_dir("llama", "chatml"))
    with serve_in_background(engine, served_name="tiny", api_key="sk-evalscope") as url:
        results = evaluate(evalscope, url, datasets, tmp_path)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-evalscope")
        for name, rows in (("my_mcq", MCQ_ROWS), ("my_qa", QA_ROWS)):
            result = results[name]
            assert result["backend"] == "evalscope"
            assert result["metrics"]["num_samples"] == len(rows)
            assert len(result["samples"]) == len(rows)
            for sample in result["samples"]:
                answer = client.chat.completions.create(model="tiny", messages=sample["input"], max_tokens=MAX_TOKENS,
                                                        temperature=0.0)
                assert sample["reply"] == answer.choices[0].message.content
        questions = [s["input"][-1]["content"] for s in results["my_qa"]["samples"]]
        assert questions == [r["query"] for r in QA_ROWS]  # general_qa sends the query as it is
        assert [s["reference"] for s in results["my_mcq"]["samples"]] == [r["answer"] for r in MCQ_ROWS]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/health", timeout=2)  # the server is gone after the block


def test_scores_match_hand_computed_values_offline(evalscope, datasets, tiny_model_dir, tmp_path):
    engine = fixed_reply_engine(tiny_model_dir("llama", "chatml"), "B")
    with serve_in_background(engine, served_name="tiny", api_key="sk-evalscope") as url:
        results = evaluate(evalscope, url, datasets, tmp_path)

    mcq = results["my_mcq"]
    assert [s["reply"] for s in mcq["samples"]] == ["B"] * 4
    recomputed = sum(s["extracted"] == s["reference"] for s in mcq["samples"]) / len(mcq["samples"])
    assert mcq["metrics"]["accuracy"] == pytest.approx(recomputed) == pytest.approx(2 / 4)
    assert mcq["subsets"]["exam"] == {"accuracy": pytest.approx(0.5), "num_samples": 4}
    assert mcq["primary_metric"] == "accuracy"

    qa = results["my_qa"]
    assert qa["metrics"]["num_samples"] == 3
    assert [s["score"]["bleu-1"] for s in qa["samples"]] == [1, 0, 0]
    # evalscope's report rounds scores to 4 decimals
    assert qa["metrics"]["bleu-1"] == pytest.approx(1 / 3, abs=1e-4)  # 0 if punkt_tab did not load
    assert qa["metrics"]["rouge-1-recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert qa["primary_metric"] == "rouge-l-recall"
    assert Path(qa["output_dir"], "reports").is_dir()


def test_a_folder_without_the_subsets_file_fails_with_evalscopes_reason(evalscope, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    spec = {"name": "nothing", "evalscope": "general_qa", "local_path": str(empty), "subsets": None, "args": {}}
    with pytest.raises(EvalscopeRunError, match="No dataset file found") as caught:
        run_evalscope(python=evalscope, base_url="http://127.0.0.1:9", model="tiny", api_key=None, datasets=[spec],
                      work_dir=tmp_path / "out", limit=None, generation={"max_tokens": 4}, few_shot=None,
                      timeout_s=120)
    assert "default_test.jsonl" in str(caught.value)  # the file evalscope looked for
