"""Built-in tuners on a tiny model: which parameters train."""

import pytest

from swiftkit.config import TunerArgs
from swiftkit.train.errors import TrainError
from swiftkit.train.tuners import apply_freeze, apply_full, apply_lora


@pytest.fixture
def model():
    from tiny import make_tiny_model

    return make_tiny_model("llama")


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_lora_targets_every_linear_layer_but_the_head(model):
    tuned = apply_lora(model, TunerArgs())
    names = trainable(tuned)
    assert names and all("lora_" in n for n in names)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f"{proj}.lora_A" in n for n in names), proj
    assert not any("lm_head" in n for n in names)


def test_lora_bad_target_is_a_clear_error(model):
    with pytest.raises(TrainError, match="--target_modules"):
        apply_lora(model, TunerArgs(target_modules=["no_such_module"]))


def test_full_trains_everything(model):
    for p in model.parameters():
        p.requires_grad_(False)
    assert trainable(apply_full(model, TunerArgs())) == {n for n, _ in model.named_parameters()}


def test_freeze_trains_only_last_layers(model):
    names = trainable(apply_freeze(model, TunerArgs(freeze_trainable_layers=1)))
    assert names and all(n.startswith(("model.layers.1.", "model.norm")) for n in names)
    with pytest.raises(TrainError, match="exceeds"):
        apply_freeze(model, TunerArgs(freeze_trainable_layers=3))
