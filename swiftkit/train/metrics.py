"""Built-in evaluation metrics selected by ``--metric`` (the ``swiftkit_get_metrics`` hook).

Each entry is ``name -> build(config) -> compute_metrics(EvalPrediction) -> dict``; the dict's keys
are logged with the ``eval_`` prefix (``eval_acc``, ``eval_rouge-l``, ``eval_bleu``).

- ``acc``: teacher-forced token accuracy on the labelled (reply) tokens. The function carries a
  ``preprocess_logits_for_metrics`` attribute, which the recipe hands to the trainer (a plugin's
  metric may carry one too).
- ``rouge-l`` (also ``rouge``), ``bleu``, and ``nlg`` (both): need ``--predict_with_generate``; at each
  evaluation the trainer generates a greedy reply to each ``--val_dataset`` prompt and the function
  gets ``EvalPrediction(predictions=replies, label_ids=references)``, both lists of strings (see
  :mod:`swiftkit.train.generate_eval`; a plugin's metric gets the same with that flag).

The scores themselves are in :mod:`swiftkit.train.text_metrics`.
"""

from __future__ import annotations

import importlib.util

from swiftkit.core.errors import ConfigError
from swiftkit.train.text_metrics import METRICS_EXTRA, ReplyScores, TokenAccuracy

# metric name -> the keys its compute_metrics returns (logged with the eval_ prefix)
METRIC_KEYS = {"acc": ("acc",), "rouge-l": ("rouge-l",), "rouge": ("rouge-l",), "bleu": ("bleu",),
               "nlg": ("rouge-l", "bleu")}
_PACKAGES = {"rouge-l": ("rouge_score", "rouge-score"), "bleu": ("nltk", "nltk")}


def has_eval_data(config) -> bool:
    """Whether the run has evaluation rows (--val_dataset, or a --split_dataset_ratio share)."""
    return bool(config.data.val_dataset) or config.data.split_dataset_ratio > 0


def require_evaluation(config, what: str) -> None:
    """A ConfigError naming ``what`` unless the run evaluates (evaluation rows, --eval_strategy not no)."""
    if not has_eval_data(config):
        raise ConfigError(f"{what} works on evaluations: pass --val_dataset FILE or --split_dataset_ratio (e.g. 0.1)")
    if config.training.eval_strategy == "no":
        raise ConfigError(f"{what} works on evaluations: drop --eval_strategy no")


def _build_acc(config):
    require_evaluation(config, "--metric acc")
    if config.callback.predict_with_generate:
        raise ConfigError("--metric acc is teacher-forced token accuracy; with --predict_with_generate use --metric "
                          "rouge-l, bleu or nlg")
    return TokenAccuracy()


def _reply_metric(name: str):
    keys = METRIC_KEYS[name]

    def build(config):
        what = f"--metric {name}"
        if getattr(config, "command", "sft") != "sft":
            raise ConfigError(f"{what} scores generated replies to conversations; `swiftkit {config.command}` "
                              "trains on raw text: use --metric acc")
        if not config.callback.predict_with_generate:
            raise ConfigError(f"{what} scores generated replies: add --predict_with_generate true")
        require_evaluation(config, what)
        for key in keys:
            module, package = _PACKAGES[key]
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"{what} needs the {package} package: {METRICS_EXTRA}")
        return ReplyScores(keys)

    return build


BUILTIN_METRICS: dict = {
    "acc": _build_acc,
    "rouge-l": _reply_metric("rouge-l"),
    "rouge": _reply_metric("rouge"),
    "bleu": _reply_metric("bleu"),
    "nlg": _reply_metric("nlg"),
}
