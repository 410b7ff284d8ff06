"""--metric: token accuracy, ROUGE-L and BLEU-4 on inputs whose values are worked out by hand, CJK text
scored per character, and the flag checks each metric makes before any weights load."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swiftkit.config import PtConfig, SftConfig
from swiftkit.core.errors import ConfigError
from swiftkit.train.metrics import BUILTIN_METRICS
from swiftkit.train.text_metrics import (
    ReplyScores,
    TokenAccuracy,
    argmax_ids,
    bleu,
    rouge_l,
    score_tokens,
    token_accuracy,
)


class Pred:
    def __init__(self, predictions, label_ids):
        self.predictions, self.label_ids = predictions, label_ids


def config(cls=SftConfig, **flags):
    return cls.from_flat({"model": "tiny", "dataset": ["rows.jsonl"], "val_dataset": ["val.jsonl"], **flags})


# -- token accuracy ----------------------------------------------------------------------------------


def test_token_accuracy_compares_each_position_with_the_next_label():
    # argmax at position i predicts label i+1; -100 positions (prompt, padding) do not count.
    predicted = np.array([[7, 1, 2, 9, 4],
                          [5, 5, 6, -100, -100]])
    labels = np.array([[-100, -100, 2, 3, 4],   # targets 2 (guess 1: wrong), 3 (guess 2: wrong), 4 (guess 9: no)
                       [-100, 5, 6, -100, -100]])  # targets 5 (guess 5: right), 6 (guess 5: wrong)
    assert token_accuracy(predicted, labels) == pytest.approx(1 / 5)
    labels[0, 2:] = [1, 2, 9]  # now the first row's three guesses are right: 4 of 5
    assert token_accuracy(predicted, labels) == pytest.approx(4 / 5)
    assert token_accuracy(predicted, np.full_like(labels, -100)) == 0.0


def test_acc_keeps_only_argmax_ids_and_reports_acc():
    import torch

    logits = torch.zeros(1, 4, 10)
    for pos, tok in enumerate([3, 4, 5, 0]):
        logits[0, pos, tok] = 1.0
    ids = argmax_ids((logits,), None)
    assert ids.tolist() == [[3, 4, 5, 0]] and ids.dtype == torch.int64
    metric = TokenAccuracy()
    assert metric.preprocess_logits_for_metrics is argmax_ids
    labels = np.array([[-100, 3, 4, 9]])  # 3 and 4 right, 9 wrong (guess 5)
    assert metric(Pred(ids.numpy(), labels)) == {"acc": pytest.approx(2 / 3)}


# -- ROUGE-L and BLEU ----------------------------------------------------------------------------------


def test_rouge_l_is_the_lcs_f_measure():
    # LCS of "the cat sat on the mat" / "the cat sat on a mat" is "the cat sat on mat": 5 of 6 both ways.
    assert rouge_l("the cat sat on the mat", "the cat sat on a mat") == pytest.approx(5 / 6)
    # 2 of 3 reply tokens in order ("a", "c"), 2 of 4 reference tokens: F = 2PR/(P+R) = 4/7.
    assert rouge_l("a b c", "a c d e") == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert rouge_l("Hello, World!", "hello world") == 1.0  # case and punctuation do not count
    assert rouge_l("", "") == 1.0 and rouge_l("", "x") == 0.0


def test_bleu_is_the_geometric_mean_of_clipped_ngram_precisions():
    # 1-grams 5/6 ("the" clipped to once), 2-grams 3/5, 3-grams 2/4, 4-grams 1/3; equal lengths: no brevity penalty.
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert bleu("the cat sat on the mat", "the cat sat on a mat") == pytest.approx(expected)
    assert bleu("the cat sat on a mat", "the cat sat on a mat") == pytest.approx(1.0)
    # A 5-token reply against a 6-token reference: brevity penalty exp(1 - 6/5); the precisions are all 1.
    assert bleu("the cat sat on a", "the cat sat on a mat") == pytest.approx(math.exp(1 - 6 / 5))
    # Smoothing (nltk method 1): an n-gram order with no match counts 0.1 matches instead of zeroing BLEU.
    # "a b x d" vs "a b c d": 1-grams 3/4, 2-grams 1/3 ("a b"), 3-grams 0/2 -> 0.1/2, 4-grams 0/1 -> 0.1/1.
    assert bleu("a b x d", "a b c d") == pytest.approx((3 / 4 * 1 / 3 * 0.1 / 2 * 0.1 / 1) ** 0.25)
    assert bleu("", "a") == 0.0 and bleu("", "") == 1.0


def test_cjk_text_is_scored_per_character():
    assert score_tokens("我爱北京 Tiananmen, 2024!") == ["我", "爱", "北", "京", "tiananmen", "2024"]
    assert score_tokens("こんにちは、世界") == ["こ", "ん", "に", "ち", "は", "世", "界"]
    # 我 爱 of 我 爱 北 京 / 我 爱 上 海: LCS 2 of 4 each way.
    assert rouge_l("我爱北京", "我爱上海") == pytest.approx(0.5)
    # 1-grams 2/4, 2-grams 1/3, 3- and 4-grams none (0.1/2, 0.1/1 smoothed).
    assert bleu("我爱北京", "我爱上海") == pytest.approx((2 / 4 * 1 / 3 * 0.1 / 2 * 0.1 / 1) ** 0.25)
    assert rouge_l("你好世界", "你好世界") == 1.0


def test_reply_scores_average_over_rows():
    scores = ReplyScores(("rouge-l", "bleu"))(Pred(["a b c d", "x"], ["a b c d", "y"]))
    assert scores == {"rouge-l": pytest.approx(0.5), "bleu": pytest.approx(0.5)}


# -- the registry and its flag checks ------------------------------------------------------------------


def test_registry_names():
    assert set(BUILTIN_METRICS) == {"acc", "rouge-l", "rouge", "bleu", "nlg"}
    assert isinstance(BUILTIN_METRICS["acc"](config()), TokenAccuracy)
    built = BUILTIN_METRICS["rouge"](config(predict_with_generate=True))
    assert built.names == ("rouge-l",)
    assert BUILTIN_METRICS["nlg"](config(predict_with_generate=True)).names == ("rouge-l", "bleu")


def test_eval_metric_is_an_alias_of_metric():
    assert SftConfig.from_flat({"model": "m", "dataset": ["d"], "eval_metric": "acc"}).training.metric == "acc"


@pytest.mark.parametrize(("name", "flags", "message"), [
    ("acc", {"val_dataset": []}, "--metric acc works on evaluations: pass --val_dataset"),
    ("acc", {"eval_strategy": "no"}, "drop --eval_strategy no"),
    ("acc", {"predict_with_generate": True}, "with --predict_with_generate use --metric rouge-l"),
    ("rouge-l", {}, "--metric rouge-l scores generated replies: add --predict_with_generate true"),
    ("bleu", {"predict_with_generate": True, "val_dataset": []}, "pass --val_dataset FILE or --split_dataset_ratio"),
])
def test_metric_flag_errors(name, flags, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        BUILTIN_METRICS[name](config(**flags))


def test_reply_metrics_refuse_raw_text():
    with pytest.raises(ConfigError, match="`swiftkit pt` trains on raw text"):
        BUILTIN_METRICS["bleu"](config(PtConfig, predict_with_generate=True))


def test_split_dataset_ratio_counts_as_evaluation_data():
    BUILTIN_METRICS["acc"](config(val_dataset=[], split_dataset_ratio=0.2))


def test_a_missing_package_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nltk" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the nltk package: pip install 'swiftkit\[metrics\]'"):
        BUILTIN_METRICS["bleu"](config(predict_with_generate=True))


@pytest.mark.parametrize(("cls", "flags", "message"), [
    (SftConfig, {}, "--predict_with_generate scores generated replies with --metric: add --metric rouge-l"),
    (PtConfig, {"metric": "bleu"}, "--predict_with_generate scores replies to --val_dataset conversations in "
                                   "`swiftkit sft`; `swiftkit pt` does not take it"),
])
def test_predict_with_generate_flag_errors(cls, flags, message):
    from hosts import HOST

    from swiftkit.recipes.parts import choose_training_parts

    with pytest.raises(ConfigError, match=message):
        choose_training_parts(HOST, config(cls, predict_with_generate=True, **flags))
    parts = choose_training_parts(HOST, config(SftConfig, predict_with_generate=True, metric="rouge"))
    assert parts.metrics.names == ("rouge-l",)
