"""The packing probe: exact for built-in decoders, refused for a model that ignores position_ids."""

import pytest
import torch

from swiftkit.train.packing import packing_is_exact


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2", "gpt2"])
def test_builtin_decoders_pack_exactly(arch):
    from tiny import make_tiny_model

    model = make_tiny_model(arch)
    model.train()
    assert packing_is_exact(model)
    assert model.training  # mode restored


class IgnoresPositions(torch.nn.Module):
    """A causal LM that drops position_ids, so packed sequences see each other."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, input_ids, position_ids=None, use_cache=None):
        return self.inner(input_ids=input_ids, use_cache=use_cache)


def test_model_that_ignores_position_ids_is_detected():
    from tiny import make_tiny_model

    assert not packing_is_exact(IgnoresPositions(make_tiny_model("llama")))
