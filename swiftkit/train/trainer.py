"""The default trainer: ``transformers.Trainer`` with the LM head run only where a label is.

Causal-LM loss needs logits only at positions whose next token is labelled (assistant replies in
SFT). Computing the vocabulary projection everywhere else wastes time and memory (on SmolLM2 the
49k-row head is ~20% of the forward FLOPs and T x 49k logits dominate activation memory). The
loss is the same sum over labelled tokens divided by the same ``num_items_in_batch`` as the
model's own ``ForCausalLMLoss``; a test checks equality. Models that do not take
``logits_to_keep``, and runs with a plugin loss, use the stock path; so does an evaluation whose
``compute_metrics`` reads the logits.

With ``--predict_with_generate`` the recipe sets ``generation_eval``
(:class:`swiftkit.train.generate_eval.GenerationEval`): every evaluation then also generates replies
to the validation prompts and logs the metric's scores of them beside the eval loss.
"""

from __future__ import annotations

import torch
from transformers import Trainer

from swiftkit.inference.scoring import accepts_logits_to_keep
from swiftkit.train.errors import TrainError
from swiftkit.train.guards import non_finite_message
from swiftkit.train.head_loss import head_cross_entropy, head_input, plain_head
from swiftkit.train.losses import token_cross_entropy
from swiftkit.train.sharding import EngineSetup


def label_only_loss(model, inputs: dict, num_items_in_batch=None):
    """Causal-LM loss computing logits only at positions that predict a labelled token.

    In training, where the logits are the output embedding's plain product, the head and the loss
    run fused by chunks (:mod:`swiftkit.train.head_loss`; the returned outputs then hold no logits)."""
    inputs = {**inputs, "use_cache": False}
    labels = inputs.pop("labels")
    targets = labels[:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().squeeze(-1)
    head = plain_head(model, inputs) if torch.is_grad_enabled() else None
    if head is None:
        outputs = model(**inputs, logits_to_keep=keep)
        return token_cross_entropy(outputs.logits, targets[:, keep], num_items_in_batch), outputs
    with head_input(head) as seen:
        outputs = model(**inputs, logits_to_keep=keep)
    return head_cross_entropy(seen[0], head.weight, targets[:, keep], num_items_in_batch), outputs


class SwiftTrainer(EngineSetup, Trainer):
    """Trainer whose default loss skips the LM head at unlabelled positions (same value).

    ``scheduler_factory(optimizer, num_training_steps)`` (set by the recipe from the
    ``swiftkit_get_lr_scheduler`` hook) may return a scheduler; ``None`` keeps transformers' own.
    A non-finite loss stops training at that step, before its update; ``loss_label`` names the
    loss in that error.
    """

    scheduler_factory = None
    loss_label = "the model's own cross-entropy"
    generation_eval = None  # --predict_with_generate: GenerationEval(model) -> {metric: score}

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise TrainError(non_finite_message("the loss", loss.item(), self.state.global_step + 1, self.loss_label))
        return loss

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.scheduler_factory is not None:
            optimizer = self.optimizer if optimizer is None else optimizer
            self.lr_scheduler = self.scheduler_factory(optimizer, num_training_steps)
            if self.lr_scheduler is not None:
                # transformers' own flag for "this trainer made the scheduler" (it then steps and saves
                # it); private. Remove when Trainer takes a scheduler factory.
                self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        stock = (
            self.compute_loss_func is not None
            or (self.compute_metrics is not None and return_outputs)  # an evaluation's metrics read the logits
            or "labels" not in inputs
            or not accepts_logits_to_keep(model)
        )
        # No KV cache in training: with a cache, transformers 5.24 skips the block-diagonal mask it
        # builds from position_ids, and packed (padding-free) rows would attend across sequences.
        inputs = {**inputs, "use_cache": False}
        if stock:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # Same normalisation as the stock path: the model divides by num_items_in_batch only
        # when it accepts loss kwargs (otherwise training_step divides by accumulation steps).
        count = num_items_in_batch if self.model_accepts_loss_kwargs else None
        loss, outputs = label_only_loss(model, inputs, count)
        if self.args.average_tokens_across_devices and count is not None and self.accelerator.num_processes > 1:
            # count is the labelled tokens of all ranks, and DDP averages the ranks' gradients
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                         metric_key_prefix)
        if self.generation_eval is not None and description == "Evaluation":
            scores = self.generation_eval(self.model)
            output.metrics.update({f"{metric_key_prefix}_{key}": value for key, value in scores.items()})
        return output
