"""Reference-based text metrics for generation benchmarks: ROUGE-L, BLEU and chrF, all in [0, 1].

* :func:`rouge_l`: ROUGE-L F-measure (``rouge-score``) over :func:`swiftkit.data.text_tokens.score_tokens`
  tokens: lower-cased words, each CJK character a token, punctuation dropped, so Chinese, Japanese
  and Korean replies score too (rouge-score's own tokenizer keeps only a-z and 0-9).
* :func:`bleu` / :func:`sentence_bleu`: BLEU-4 from ``sacrebleu``, divided by 100. The tokenizer is
  sacrebleu's ``"zh"`` when any of the texts holds a CJK character (it splits Chinese ideographs
  and CJK punctuation into single tokens; kana and Hangul runs stay whole words), else its standard
  ``"13a"``. The corpus score picks one tokenizer for the whole corpus; the sentence score picks
  per pair. Sentence BLEU uses sacrebleu's defaults for single sentences: ``"exp"`` smoothing
  (each n-gram order without a match counts 1/2, 1/4, ... of a match) and effective order (orders
  longer than the hypothesis are left out), so short replies do not score 0 for lack of 4-grams.
  Corpus BLEU is unsmoothed, as sacrebleu reports it.
* :func:`chrf` / :func:`sentence_chrf`: chrF (character n-grams up to 6, beta 2, whitespace ignored;
  sacrebleu's defaults), divided by 100; language-independent, so no tokenizer choice.

BLEU and chrF follow sacrebleu where a text is empty: an empty prediction scores 0, even against an
empty reference (ROUGE-L gives 1.0 there).

``rouge-score`` and ``sacrebleu`` are imported when a score is first computed; a missing one raises
:class:`swiftkit.core.errors.ConfigError` saying how to install it.
"""

from __future__ import annotations

import importlib

from swiftkit.core.errors import ConfigError
from swiftkit.data.text_tokens import has_cjk, score_tokens

METRICS_EXTRA = "pip install 'swiftkit[metrics]'"


def _require(module: str, package: str):
    """``module``, imported on first use; a :class:`ConfigError` naming ``package`` when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"text metrics need the {package!r} package, which is not installed: "
                          f"{METRICS_EXTRA}") from exc


def _fraction(score: float) -> float:
    """A sacrebleu score (0..100) as a fraction, without float noise past 1.0 (100.00000000000004)."""
    return min(1.0, max(0.0, score / 100))


class _ScoreTokenizer:
    """rouge-score's tokenizer interface over :func:`score_tokens`."""

    def tokenize(self, text: str) -> list[str]:
        return score_tokens(text)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure of ``prediction`` against ``reference``: with L the longest common
    subsequence of their tokens, P = L / len(prediction), R = L / len(reference), F = 2PR / (P + R).
    1.0 when neither has a token, 0.0 when only one has none."""
    rouge_scorer = _require("rouge_score.rouge_scorer", "rouge-score")
    if not score_tokens(prediction) and not score_tokens(reference):
        return 1.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_ScoreTokenizer())
    return float(scorer.score(reference, prediction)["rougeL"].fmeasure)


def _bleu_tokenizer(*texts: str) -> str:
    return "zh" if any(has_cjk(t) for t in texts) else "13a"


def _check_pairs(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions for {len(references)} references; "
                         "a corpus score needs one reference per prediction")
    if not predictions:
        raise ValueError("a corpus score needs at least one prediction")


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU-4 of ``predictions`` against ``references`` (one reference each), in [0, 1]."""
    _check_pairs(predictions, references)
    sacrebleu = _require("sacrebleu", "sacrebleu")
    metric = sacrebleu.BLEU(tokenize=_bleu_tokenizer(*predictions, *references))
    return _fraction(metric.corpus_score(list(predictions), [list(references)]).score)


def sentence_bleu(prediction: str, reference: str) -> float:
    """BLEU-4 of one prediction against its reference, smoothed ("exp") with effective order, in [0, 1]."""
    sacrebleu = _require("sacrebleu", "sacrebleu")
    metric = sacrebleu.BLEU(tokenize=_bleu_tokenizer(prediction, reference), effective_order=True)
    return _fraction(metric.sentence_score(prediction, [reference]).score)


def chrf(predictions: list[str], references: list[str]) -> float:
    """Corpus chrF of ``predictions`` against ``references`` (one reference each), in [0, 1]."""
    _check_pairs(predictions, references)
    sacrebleu = _require("sacrebleu", "sacrebleu")
    return _fraction(sacrebleu.CHRF().corpus_score(list(predictions), [list(references)]).score)


def sentence_chrf(prediction: str, reference: str) -> float:
    """chrF of one prediction against its reference, in [0, 1]."""
    sacrebleu = _require("sacrebleu", "sacrebleu")
    return _fraction(sacrebleu.CHRF().sentence_score(prediction, [reference]).score)
