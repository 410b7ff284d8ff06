"""Is padding-free packing exact for this model? Checked, not assumed.

A padding-free batch is one row holding several sequences, separated only by ``position_ids``
restarting at 0. That is exact only when the model's attention turns those positions into a
block-diagonal mask (transformers 5 does for its built-in decoders when no KV cache is used).
Remote-code or older models may not; then sequences would silently attend to each other. The probe
runs two short sequences packed and alone and compares the logits (two forward passes of a few
tokens).
"""

from __future__ import annotations


def packing_is_exact(model, vocab_size: int | None = None, atol: float = 1e-3) -> bool:
    """True when packed sequences give the same logits as the sequences run alone."""
    import torch

    vocab = vocab_size or model.config.get_text_config().vocab_size
    gen = torch.Generator().manual_seed(0)
    first = torch.randint(0, vocab, (1, 7), generator=gen)
    second = torch.randint(0, vocab, (1, 5), generator=gen)
    packed = torch.cat([first, second], dim=1)
    positions = torch.cat([torch.arange(7), torch.arange(5)]).unsqueeze(0)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = torch.cat(
                [model(input_ids=x.to(device), use_cache=False).logits for x in (first, second)], dim=1
            )
            together = model(input_ids=packed.to(device), position_ids=positions.to(device),
                             use_cache=False).logits
    except (TypeError, ValueError, RuntimeError):
        return False
    finally:
        model.train(was_training)
    return together.shape == alone.shape and torch.allclose(together.float(), alone.float(), atol=atol)
