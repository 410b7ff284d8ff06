"""Log-probabilities of given tokens under a causal LM: the one scoring pass that both the deploy
server (prompt log-probabilities, ``echo`` with ``logprobs``) and in-process evaluation
(:mod:`swiftkit.evaluate.local`) use.

:func:`token_logprobs` takes token id sequences and gives, for each token from a sequence's start
index on (by default every token after the first), its log-probability given the tokens before it,
whether it is the model's likeliest next token (the argmax) and, when asked, the ``top`` likeliest
alternatives. Sequences run in batches of similar length, right-padded with an attention mask
(padding after a sequence cannot change its logits), in eval mode without gradients; the model's
mode is restored afterwards, so a model being trained can be scored between steps. Only the logit
rows that score some token are kept where the model's forward takes ``logits_to_keep``, and the
float32 ``log_softmax`` runs over a few hundred rows at a time, so a long batch never holds a
float32 ``[batch, length, vocab]`` tensor. A sequence longer than the model's context
(``max_position_embeddings``) is an error: windowing long texts is the caller's choice.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

ROWS_PER_SOFTMAX = 512  # logit rows turned into float32 log-probabilities at once


@dataclass(frozen=True)
class TokenScore:
    """One scored token: its log-probability given its prefix, whether it is the argmax there, and
    the ``top`` likeliest tokens at that position as ``(token id, log-probability)``, likeliest first."""

    token_id: int
    logprob: float
    greedy: bool
    top: tuple[tuple[int, float], ...] = ()


def max_positions(model) -> int | None:
    """The longest sequence ``model`` takes (its config's ``max_position_embeddings``), if it says."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def accepts_logits_to_keep(model) -> bool:
    """Whether the forward of ``model`` (or of the model a peft wrapper holds) takes ``logits_to_keep``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def token_logprobs(model, sequences: list[list[int]], *, pad_token_id: int, batch_size: int = 8, top: int = 0,
                   starts: list[int] | None = None) -> list[list[TokenScore]]:
    """For each sequence, a :class:`TokenScore` per token from ``starts[i]`` (default 1; at least 1:
    the first token has nothing before it) to its end, in order.

    ``top`` > 0 adds that many likeliest alternatives per scored token. Raises ``ValueError`` for a
    sequence longer than the model's context or a start outside its sequence.
    """
    import torch  # defers torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = [1] * len(sequences) if starts is None else list(starts)
    if len(starts) != len(sequences):
        raise ValueError(f"{len(starts)} starts for {len(sequences)} sequences")
    limit = max_positions(model)
    for i, (seq, start) in enumerate(zip(sequences, starts)):
        if limit is not None and len(seq) > limit:
            raise ValueError(f"sequence {i} has {len(seq)} tokens, more than the model's context of {limit} "
                             "(max_position_embeddings): split it into windows first")
        if not 1 <= start <= len(seq):
            raise ValueError(f"sequence {i}: start {start} is outside 1..{len(seq)} (its length)")
    out: list[list[TokenScore]] = [[] for _ in sequences]
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)
    keep_rows = accepts_logits_to_keep(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():  # not inference_mode: tensors a training model caches must stay usable
            for b in range(0, len(order), batch_size):
                batch = order[b:b + batch_size]
                for i, scores in zip(batch, _score_batch(model, [sequences[i] for i in batch],
                                                         [starts[i] for i in batch], pad_token_id, top, keep_rows)):
                    out[i] = scores
    finally:
        model.train(was_training)
    return out


def _score_batch(model, seqs: list[list[int]], starts: list[int], pad_token_id: int, top: int,
                 keep_rows: bool) -> list[list[TokenScore]]:
    import torch  # defers torch

    device = getattr(model, "device", None) or next(model.parameters()).device
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad_token_id] * (width - len(s)) for s in seqs], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
    # The logit row at position p predicts token p + 1: a row is needed when some sequence scores that token.
    needed = sorted({p for s, start in zip(seqs, starts) for p in range(start - 1, len(s) - 1)})
    if not needed:
        return [[] for _ in seqs]
    kwargs = {}
    if keep_rows:
        kwargs["logits_to_keep"] = torch.tensor(needed, device=device)
        column = {p: k for k, p in enumerate(needed)}
    else:
        column = {p: p for p in needed}
    logits = model(input_ids=ids, attention_mask=mask, **kwargs).logits
    results = []
    for row, (seq, start) in enumerate(zip(seqs, starts)):
        scores: list[TokenScore] = []
        for first in range(start, len(seq), ROWS_PER_SOFTMAX):
            targets = seq[first:first + ROWS_PER_SOFTMAX]
            cols = torch.tensor([column[t - 1] for t in range(first, first + len(targets))], device=device)
            logprobs = torch.log_softmax(logits[row].index_select(0, cols).float(), dim=-1)
            wanted = torch.tensor(targets, device=device)
            chosen = logprobs.gather(1, wanted[:, None])[:, 0].tolist()
            greedy = (logprobs.argmax(dim=-1) == wanted).tolist()
            if top:
                values, indices = logprobs.topk(top, dim=-1)
                tops = [tuple(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]
            else:
                tops = [()] * len(targets)
            scores += [TokenScore(t, lp, g, alt) for t, lp, g, alt in zip(targets, chosen, greedy, tops)]
        results.append(scores)
    return results
