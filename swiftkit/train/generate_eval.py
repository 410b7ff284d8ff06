"""``--predict_with_generate``: at each evaluation, reply to the ``--val_dataset`` prompts and score the
replies against the reference replies with ``--metric``.

Each validation conversation that ends with an assistant message gives one prompt (every token
before that reply, exactly what ``swiftkit infer`` sends for the same messages:
``Template.encode_completion``) and one reference (the message's text). Replies are generated
greedily by the same engine ``swiftkit infer`` uses (:class:`~swiftkit.inference.TransformersEngine`),
``--per_device_eval_batch_size`` prompts at a time, each cut at the template's end-of-turn tokens and
at most twice its reference's token count plus 16 tokens long (a reply far longer than its reference
scores badly anyway, and an untrained model may never stop). The metric function then gets
``EvalPrediction(predictions=replies, label_ids=references)``.
"""

from __future__ import annotations

from swiftkit.inference.engine import TransformersEngine
from swiftkit.inference.protocol import SamplingParams
from swiftkit.templates.errors import TemplateError
from swiftkit.train.errors import TrainError

EXTRA_TOKENS = 16  # a reply may run this much past twice its reference's length


class GenerationEval:
    """Prompts and references of the validation rows, and how to reply to and score them."""

    def __init__(self, template, prompts: list[list[int]], references: list[str], max_new_tokens: list[int],
                 compute_metrics, batch_size: int = 1):
        self.template = template
        self.prompts = prompts
        self.references = references
        self.max_new_tokens = max_new_tokens
        self.compute_metrics = compute_metrics
        self.batch_size = max(1, batch_size)

    def replies(self, model) -> list[str]:
        """Greedy replies of ``model`` (put in eval mode) to every prompt, in order."""
        model.eval()
        engine = TransformersEngine(model, self.template)
        out: list[str] = []
        for start in range(0, len(self.prompts), self.batch_size):
            batch = self.prompts[start:start + self.batch_size]
            limit = max(self.max_new_tokens[start:start + self.batch_size])
            params = SamplingParams(max_tokens=limit, temperature=0.0, stop=tuple(self.template.stop_words))
            out += [reply.text.strip() for reply in engine.generate_ids(batch, params)]
        return out

    def __call__(self, model) -> dict:
        """The metric function's scores of ``model``'s replies (keys without the ``eval_`` prefix)."""
        from transformers import EvalPrediction  # defers transformers

        return self.compute_metrics(EvalPrediction(predictions=self.replies(model), label_ids=list(self.references)))


def generation_eval(template, rows: list[dict], compute_metrics, batch_size: int = 1) -> GenerationEval:
    """The :class:`GenerationEval` of the validation ``rows`` (rows whose conversation does not end
    with an assistant reply, or is too long for --max_length, are left out)."""
    prompts, references, limits = [], [], []
    for row in rows:
        messages = row.get("messages") if isinstance(row, dict) else None
        if not messages or messages[-1].get("role") != "assistant":
            continue
        try:
            prompt, reply = template.encode_completion(row)
        except TemplateError:  # too long: the eval loss leaves it out too
            continue
        content = messages[-1].get("content")
        prompts.append(prompt)
        references.append(content if isinstance(content, str) else template.decode(reply))
        room = template.max_length - len(prompt) if template.max_length else None
        limits.append(max(1, min(2 * len(reply) + EXTRA_TOKENS, room if room is not None else 1 << 30)))
    if not prompts:
        raise TrainError("--predict_with_generate: no --val_dataset row is a conversation ending with an assistant "
                         "reply to compare a generated reply with")
    return GenerationEval(template, prompts, references, limits, compute_metrics, batch_size)
