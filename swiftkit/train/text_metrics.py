"""The scores behind the built-in ``--metric`` names: token accuracy, ROUGE-L and BLEU-4.

``acc`` is teacher-forced: the argmax of the logits at each position that predicts a labelled token,
compared with that token (``preprocess_logits_for_metrics`` keeps only the argmax ids, so full
vocabulary logits are never gathered over an evaluation). ``rouge-l`` and ``bleu`` score generated
replies against the reference replies (``--predict_with_generate``), each reply on its own, and
report the mean over the rows: ROUGE-L F-measure (``rouge-score``) and sentence BLEU-4 with
smoothing (``nltk``, method 1: an n-gram order without a match counts 0.1 matches). Both read the
same tokens: the text lower-cased, each CJK character (Chinese, Japanese kana, Korean Hangul) a
token of its own, every other run of letters and digits a token, punctuation dropped. (ROUGE's own
tokenizer drops everything outside a-z and 0-9, so Chinese text would score 0.)

All values are fractions in [0, 1].
"""

from __future__ import annotations

from swiftkit.data.text_tokens import score_tokens

IGNORE_INDEX = -100
METRICS_EXTRA = "pip install 'swiftkit[metrics]'"


class _Tokens:
    """rouge-score's tokenizer interface over :func:`score_tokens`."""

    def tokenize(self, text: str) -> list[str]:
        return score_tokens(text)


def rouge_l(reply: str, reference: str) -> float:
    """ROUGE-L F-measure of one reply against its reference (1.0 when both have no token)."""
    from rouge_score import rouge_scorer  # defers rouge-score

    if not score_tokens(reply) and not score_tokens(reference):
        return 1.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokens())
    return float(scorer.score(reference, reply)["rougeL"].fmeasure)


def bleu(reply: str, reference: str) -> float:
    """Sentence BLEU-4 of one reply against its reference, smoothed (nltk method 1)."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu  # defers nltk

    hyp, ref = score_tokens(reply), score_tokens(reference)
    if not hyp or not ref:
        return float(not hyp and not ref)
    return float(sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1))


TEXT_SCORES = {"rouge-l": rouge_l, "bleu": bleu}


class ReplyScores:
    """``compute_metrics`` for generated replies: ``EvalPrediction(predictions=replies,
    label_ids=references)`` (lists of strings) -> ``{name: mean score}`` for each of ``names``."""

    def __init__(self, names):
        self.names = tuple(names)

    def __call__(self, eval_pred) -> dict:
        replies, references = list(eval_pred.predictions), list(eval_pred.label_ids)
        if not replies:
            return {}
        return {name: sum(TEXT_SCORES[name](r, t) for r, t in zip(replies, references)) / len(replies)
                for name in self.names}


def argmax_ids(logits, labels):
    """``preprocess_logits_for_metrics``: the predicted token id at each position, not the logits."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.argmax(dim=-1)


def token_accuracy(predicted, labels) -> float:
    """Share of labelled tokens the position before predicted (``predicted[:, i]`` is the argmax at
    position ``i``, which predicts ``labels[:, i + 1]``); 0.0 when nothing is labelled."""
    import numpy as np  # defers numpy

    predicted, labels = np.asarray(predicted), np.asarray(labels)
    guess, target = predicted[..., :-1], labels[..., 1:]
    mask = target != IGNORE_INDEX
    return float((guess[mask] == target[mask]).mean()) if mask.any() else 0.0


class TokenAccuracy:
    """``compute_metrics`` for teacher-forced token accuracy (``{"acc": ...}``), with the
    ``preprocess_logits_for_metrics`` the trainer must be given alongside it."""

    preprocess_logits_for_metrics = staticmethod(argmax_ids)

    def __call__(self, eval_pred) -> dict:
        return {"acc": token_accuracy(eval_pred.predictions, eval_pred.label_ids)}
