"""ROUGE-L, BLEU and chrF of generated text, on hand-checked examples (English and Chinese)."""

import math
import subprocess
import sys

import pytest

from swiftkit.evaluate.text_scores import bleu, chrf, rouge_l, sentence_bleu, sentence_chrf


def test_rouge_l_hand_computed():
    # LCS("the cat sat", "the cat sat down") = 3: P = 3/3, R = 3/4, F = 2 * 1 * 0.75 / 1.75
    assert rouge_l("the cat sat", "the cat sat down") == pytest.approx(2 * 0.75 / 1.75)
    # case and punctuation are ignored: the same three tokens
    assert rouge_l("The cat, sat!", "the cat sat") == pytest.approx(1.0)
    # LCS("a b c d", "a c b d") = 3 ("a b d" or "a c d"): P = R = 3/4
    assert rouge_l("a b c d", "a c b d") == pytest.approx(0.75)
    assert rouge_l("dog", "cat") == 0.0


def test_rouge_l_reads_each_chinese_character_as_a_token():
    # 我爱北京 vs 我爱上海: LCS 我爱 = 2 of 4 each: P = R = F = 0.5
    assert rouge_l("我爱北京", "我爱上海") == pytest.approx(0.5)


def test_rouge_l_of_empty_texts():
    assert rouge_l("", "") == 1.0
    assert rouge_l("...", "") == 1.0      # punctuation only: no tokens either
    assert rouge_l("", "something") == 0.0


def test_bleu_is_a_fraction_and_one_for_identical_text():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == 1.0
    assert bleu(["我爱北京天安门"], ["我爱北京天安门"]) == 1.0   # "zh" tokens: 7 characters, all n-grams match
    assert bleu(["completely different words here"], ["the cat sat on the mat"]) == 0.0


def test_corpus_bleu_hand_computed():
    # "the cat sat on a mat" vs "the cat sat on the mat" (13a tokens, 6 each, BP 1):
    # 1-grams 5/6, 2-grams 3/5, 3-grams 2/4, 4-grams 1/3
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert bleu(["the cat sat on a mat"], ["the cat sat on the mat"]) == pytest.approx(expected)


def test_bleu_splits_chinese_characters():
    # 13a would see one token each and score 0; "zh" gives 7 hypothesis characters against 4:
    # 1-grams 4/7, 2-grams 3/6, 3-grams 2/5, 4-grams 1/4, BP 1 (hypothesis longer)
    expected = (4 / 7 * 3 / 6 * 2 / 5 * 1 / 4) ** 0.25
    assert bleu(["我爱北京天安门"], ["我爱北京"]) == pytest.approx(expected)


def test_sentence_bleu_uses_effective_order_and_brevity_penalty():
    # "the cat" vs "the cat sat": effective order 2, 1-grams 2/2, 2-grams 1/1, BP = exp(1 - 3/2)
    assert sentence_bleu("the cat", "the cat sat") == pytest.approx(math.exp(-0.5))
    assert sentence_bleu("the cat sat", "the cat sat") == 1.0
    # "exp" smoothing: 2 unmatched orders count 1/2 and 1/4 of a match, so not 0:
    # "a b x y" vs "a b c d": 1-grams 2/4, 2-grams 1/3, 3-grams (1/2)/2, 4-grams (1/4)/1
    expected = (2 / 4 * 1 / 3 * 0.5 / 2 * 0.25 / 1) ** 0.25
    assert sentence_bleu("a b x y", "a b c d") == pytest.approx(expected)


def test_chrf():
    assert chrf(["the cat sat"], ["the cat sat"]) == 1.0
    assert sentence_chrf("abc", "xyz") == 0.0
    partial = sentence_chrf("the cat sat", "the cat sat down")
    assert 0.0 < partial < 1.0
    # a corpus of one pair scores like that pair
    assert chrf(["the cat sat"], ["the cat sat down"]) == pytest.approx(partial)


def test_corpus_scores_need_one_reference_per_prediction():
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one"):
        chrf([], [])


def test_missing_package_names_the_extra(tmp_path):
    # A real interpreter where importing sacrebleu fails: the error says how to install it.
    (tmp_path / "sacrebleu.py").write_text("raise ImportError('not installed here')\n")
    code = ("from swiftkit.core.errors import ConfigError\n"
            "from swiftkit.evaluate.text_scores import bleu\n"
            "try:\n    bleu(['a'], ['a'])\nexcept ConfigError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "'sacrebleu'" in out.stdout and "pip install 'swiftkit[metrics]'" in out.stdout
