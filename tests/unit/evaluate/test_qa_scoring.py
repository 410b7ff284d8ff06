"""Scores of the built-in ``qa`` benchmark."""

from __future__ import annotations

import pytest

from swiftkit.evaluate.qa import f1, normalize, score, tokens


def test_normalize_folds_case_punctuation_and_space():
    assert normalize("  The  Answer: Paris!\n") == "the answer paris"
    assert normalize("ＡＢＣ，") == "abc"  # full-width forms


def test_exact_match_and_contains():
    assert score("Paris.", "paris") == {"exact_match": 1.0, "contains": 1.0, "f1": 1.0}
    s = score("The capital is Paris.", "Paris")
    assert s["exact_match"] == 0.0 and s["contains"] == 1.0 and s["f1"] == pytest.approx(2 * 0.25 / 1.25)
    assert score("London", "Paris") == {"exact_match": 0.0, "contains": 0.0, "f1": 0.0}
    assert score("anything", "")["contains"] == 0.0  # an empty reference is never contained


def test_chinese_characters_are_tokens_of_their_own():
    assert tokens("我叫小星。") == ["我", "叫", "小", "星"]
    assert f1("我叫小星", "我是小星") == pytest.approx(0.75)
    assert tokens("GPT-4 和 Nova") == ["gpt", "4", "和", "nova"]


def test_empty_reply_and_reference():
    assert f1("", "") == 1.0
    assert f1("", "x") == 0.0
