"""The native evaluators on scripted model outputs: every score equals a hand computation."""

import math

import pytest

from swiftkit.evaluate.benchmark import CardBenchmark
from swiftkit.evaluate.cards import BenchmarkCard, BenchmarkError
from swiftkit.evaluate.layouts import to_items
from swiftkit.evaluate.runner import run_task
from swiftkit.evaluate.settings import EvalSettings
from swiftkit.evaluate.tasks import GenerationTask, MultipleChoiceTask, PerplexityTask
from swiftkit.evaluate.text_tasks import CodeTask, ReferenceTextTask
from tests.evaldata import GSM8K_ROWS, MATH_ROWS, MMLU_ROWS, ScriptedModel, general_mcq_folder, write_jsonl


def _run(task, model, items, **kw):
    return run_task(task, model, items, progress=False, **kw)


def test_mmlu_letters_always_b_scores_the_questions_whose_answer_is_b():
    items = to_items(MMLU_ROWS, "mmlu")
    assert [it["gold"] for it in items] == [1, 0, 2, 3]  # index 1, index 0, index 2, letter "D"
    model = ScriptedModel(loglikelihoods=lambda ctx, cont: 0.0 if cont == " B" else -1.0)
    result = _run(MultipleChoiceTask("mmlu", shots=items, few_shot=0, chat=False), model, items)
    m = result["metrics"]
    # one of four golds is B -> 1/4; per subject: arithmetic 1/2 (B, A), art 0 (C), astronomy 0 (D)
    assert m["acc"] == 0.25 and m["acc_norm"] == 0.25 and m["num_samples"] == 4
    assert m["acc/arithmetic"] == 0.5 and m["acc/art"] == 0.0 and m["acc/astronomy"] == 0.0
    assert result["item_scores"] == [1.0, 0.0, 0.0, 0.0]


def test_mmlu_prompt_lists_the_options_and_puts_few_shot_examples_of_the_same_subject_first():
    items = to_items(MMLU_ROWS, "mmlu")
    seen = []

    def ll(ctx, cont):
        seen.append((ctx, cont))
        return 0.0

    _run(MultipleChoiceTask("mmlu", shots=items, few_shot=1, chat=False), ScriptedModel(loglikelihoods=ll), items[:1])
    context = seen[0][0]
    assert context.startswith("The following are multiple choice questions (with answers) about arithmetic.")
    # the solved example is the other arithmetic question, with its answer letter; never the item itself
    assert "What is 3 * 3?\nA. 9\nB. 6\nC. 12\nD. 3\nAnswer: A\n\n" in context
    assert context.endswith("What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:")
    assert [c for _, c in seen] == [" A", " B", " C", " D"]


def test_chat_rendering_scores_the_letter_as_the_start_of_the_reply():
    items = to_items(MMLU_ROWS[:1], "mmlu")
    seen = []
    model = ScriptedModel(chat=True, loglikelihoods=lambda ctx, cont: seen.append((ctx, cont)) or 0.0)
    _run(MultipleChoiceTask("mmlu", shots=items, few_shot=0, chat=True), model, items)
    assert all(ctx.endswith("Answer:\n<assistant>") for ctx, _ in seen)
    assert [c for _, c in seen] == ["A", "B", "C", "D"]


def test_acc_norm_divides_by_the_option_length():
    rows = [{"question": "Pick", "choices": {"text": ["a", "bbbb"], "label": ["A", "B"]}, "answerKey": "B"}]
    items = to_items(rows, "arc")
    # "a": -2 (per char -2); "bbbb": -4 (per char -1): acc picks "a" (wrong), acc_norm picks "bbbb" (right)
    model = ScriptedModel(loglikelihoods={"a": -2.0, "bbbb": -4.0})
    m = _run(MultipleChoiceTask("arc", shots=items, few_shot=0, chat=False, primary="acc_norm"), model, items)
    assert m["metrics"]["acc"] == 0.0 and m["metrics"]["acc_norm"] == 1.0 and m["item_scores"] == [1.0]


def test_winogrande_scores_the_rest_of_the_sentence_after_each_filled_blank():
    rows = [{"sentence": "The cup fell off the table because _ was wobbly.", "option1": "the cup",
             "option2": "the table", "answer": "2"}]
    seen = []
    model = ScriptedModel(loglikelihoods=lambda ctx, cont: seen.append((ctx, cont)) or
                          (0.0 if ctx.endswith("the table") else -3.0))
    result = _run(MultipleChoiceTask("wg", shots=[], few_shot=0, chat=False), model, to_items(rows, "winogrande"))
    assert seen == [("The cup fell off the table because the cup", " was wobbly."),
                    ("The cup fell off the table because the table", " was wobbly.")]
    assert result["metrics"]["acc"] == 1.0


def test_gsm8k_extraction_and_numeric_comparison():
    items = to_items(GSM8K_ROWS, "gsm8k")
    assert [it["reference"] for it in items] == ["7", "36", "750"]
    model = ScriptedModel(replies={
        "apples": "3 + 4 = 7\n#### 7",            # the #### answer: right
        "pens": "12 * 3 = 36, so the answer is 35.",  # "the answer is 35": wrong
        "stamps": "1,000 - 250 leaves 750.0",       # no ####: the last number, 750.0 == 750: right
    })
    result = _run(GenerationTask("gsm8k", shots=items, few_shot=0, extractor="gsm8k"), model, items)
    assert [s["answer"] for s in result["samples"]] == ["7", "35", "750.0"]
    assert result["metrics"]["acc"] == pytest.approx(2 / 3) and result["metrics"]["extracted"] == 1.0


def test_gsm8k_few_shot_examples_are_earlier_turns_with_their_worked_answers():
    items = to_items(GSM8K_ROWS, "gsm8k")
    captured = []

    class Capturing(ScriptedModel):
        def generate(self, conversations, **generation):
            captured.extend(conversations)
            return ["#### 0"] * len(conversations)

    _run(GenerationTask("gsm8k", shots=items, few_shot=2, extractor="gsm8k"), Capturing(), items[:1])
    turns = captured[0]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[1]["content"].endswith("#### 36") and "Tom has 3 apples" in turns[-1]["content"]


def test_math_boxed_answers_compare_as_numbers_and_latex():
    items = to_items(MATH_ROWS, "math")
    assert [it["reference"] for it in items] == ["\\frac{3}{4}", "2"]
    model = ScriptedModel(replies={"frac": "so it is $\\boxed{0.75}$", "x + 1": "x = \\boxed{3}"})
    result = _run(GenerationTask("math", shots=items, few_shot=0, extractor="boxed"), model, items)
    assert [s["acc"] for s in result["samples"]] == [1.0, 0.0]
    assert result["metrics"]["acc/Prealgebra"] == 1.0 and result["metrics"]["acc/Algebra"] == 0.0


def test_letter_generation_mode_reads_the_option_letter_from_the_reply():
    items = to_items(MMLU_ROWS, "mmlu")
    model = ScriptedModel(replies={"2 + 2": "The answer is (B).", "3 * 3": "C", "primary": "答案：C",
                                   "largest": "I think Mars"})
    result = _run(GenerationTask("mmlu", shots=items, few_shot=0, extractor="letter"), model, items)
    assert [s["answer"] for s in result["samples"]] == ["B", "C", "C", None]
    assert result["metrics"]["acc"] == 0.5 and result["metrics"]["extracted"] == 0.75


def test_perplexity_bits_per_byte_and_word_perplexity():
    texts = ["ab cd", "é"]  # 5 bytes + 2 bytes, 2 words + 1 word
    model = ScriptedModel(rolling={"ab cd": (-10.0, 4), "é": (-2.0, 1)})
    items = to_items([{"text": t} for t in texts], "text")
    m = _run(PerplexityTask("ppl"), model, items)["metrics"]
    assert m["perplexity"] == pytest.approx(math.exp(12 / 5))
    assert m["bits_per_byte"] == pytest.approx(12 / math.log(2) / 7)
    assert m["word_perplexity"] == pytest.approx(math.exp(4))


def test_reference_text_rouge_l_is_the_mean_of_the_items():
    rows = [{"prompt": "Say it", "reference": "the cat sat down"},
            {"prompt": "Again", "reference": "a big dog ran home fast"}]
    model = ScriptedModel(replies={"Say it": "the cat sat", "Again": "a big dog ran home fast"})
    result = _run(ReferenceTextTask("qa"), model, to_items(rows, "reference"))
    # LCS 3 of 3 and 4 tokens: P 1, R 3/4, F 6/7; the second reply is exact: 1
    assert result["metrics"]["rouge_l"] == pytest.approx((6 / 7 + 1) / 2)
    assert result["samples"][1]["sentence_bleu"] == pytest.approx(1.0)
    assert 0 < result["metrics"]["bleu"] < 1 and 0 < result["metrics"]["chrf"] < 1


def test_code_task_runs_each_program_and_enforces_the_time_limit():
    rows = [{"task_id": "t/0", "prompt": "def add(a, b):\n", "test": "def check(f):\n    assert f(2, 3) == 5\n",
             "entry_point": "add"},
            {"task_id": "t/1", "prompt": "def spin():\n", "test": "def check(f):\n    f()\n", "entry_point": "spin"}]
    model = ScriptedModel(replies={"add": "```python\ndef add(a, b):\n    return a + b\n```",
                                   "spin": "```python\ndef spin():\n    while True:\n        pass\n```"})
    task = CodeTask("humaneval", layout="humaneval", num_samples=1, timeout_s=1.0, memory_mb=512)
    result = _run(task, model, to_items(rows, "humaneval"))
    assert [s["statuses"] for s in result["samples"]] == [["passed"], ["timeout"]]
    assert result["metrics"]["pass@1"] == 0.5 and result["metrics"]["timeouts"] == 1.0


def test_code_benchmarks_are_refused_without_allow_code_execution(tmp_path):
    path = write_jsonl(tmp_path / "he.jsonl", [{"task_id": "x", "prompt": "p", "test": "t", "entry_point": "f"}])
    bench = CardBenchmark(BenchmarkCard(name="humaneval", layout="humaneval"), str(path))
    with pytest.raises(BenchmarkError, match="--allow_code_execution"):
        bench.run(ScriptedModel(), EvalSettings(progress=False))


def test_general_mcq_folder_uses_the_dev_split_for_few_shot_and_the_val_split_for_scoring(tmp_path):
    folder = general_mcq_folder(tmp_path)
    card = BenchmarkCard(name="general_mcq", layout="ceval", split="val", few_shot_split="dev")
    contexts = []

    def ll(ctx, cont):  # right on the first two questions, wrong (A) on the third... whose answer is A: pick D
        contexts.append(ctx)
        want = {"2 + 2": " B", "sky": " C", "freezes": " D"}
        return 0.0 if any(k in ctx.rsplit("\n\n", 1)[-1] and cont == v for k, v in want.items()) else -1.0

    result = CardBenchmark(card, str(folder)).run(ScriptedModel(loglikelihoods=ll),
                                                 EvalSettings(few_shot=1, progress=False))
    assert result["metrics"]["acc"] == pytest.approx(2 / 3) and result["metrics"]["num_samples"] == 3
    assert all("1 + 1 = ?\nA. 2\nB. 3\nC. 4\nD. 5\nAnswer: A" in c for c in contexts)
    assert {s["subject"] for s in result["samples"]} == {"quiz"}


def test_a_row_missing_a_layout_column_names_its_file_line_and_columns(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "#### 1"}, {"question": "q2"}])
    bench = CardBenchmark(BenchmarkCard(name="gsm8k", layout="gsm8k"), str(path))
    with pytest.raises(BenchmarkError, match=r"bad\.jsonl:2: a gsm8k row needs column\(s\) answer; it has question"):
        bench.items(EvalSettings())


def test_limit_scores_the_first_items_only(tmp_path):
    path = write_jsonl(tmp_path / "gsm.jsonl", GSM8K_ROWS)
    bench = CardBenchmark(BenchmarkCard(name="gsm8k", layout="gsm8k"), str(path))
    result = bench.run(ScriptedModel(default_reply="#### 7"), EvalSettings(limit=2, progress=False))
    assert result["metrics"]["num_samples"] == 2 and result["metrics"]["acc"] == 0.5
