"""GaLore: the targeted 2-D weights keep low-rank optimizer state, the rest full-shape AdamW state, and a
checkpoint of the optimizer holds only tensors and resumes with the same projection."""

from __future__ import annotations

import io

import pytest
from test_optimizers import config, train_losses

from swiftkit.core.errors import ConfigError
from swiftkit.train.errors import TrainError
from swiftkit.train.optim_galore import build_galore, galore_targets
from swiftkit.train.optim_names import check_optim_flags

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RANK = 4


def galore_config(**flags):
    return config(**{"train_type": "full", "optimizer": "galore", "galore_rank": RANK, "learning_rate": 1e-3, **flags})


@pytest.fixture
def model():
    from tiny import make_tiny_model

    return make_tiny_model("llama")


def test_default_targets_are_the_attention_and_mlp_projections(model):
    targets = galore_targets(model, [])
    assert sorted(targets) == sorted(f"model.layers.{i}.{part}.{proj}.weight" for i in range(2)
                                     for part, projs in (("self_attn", PROJECTIONS[:4]), ("mlp", PROJECTIONS[4:]))
                                     for proj in projs)
    assert galore_targets(model, ["q_proj", "mlp"]) == [n for n in targets if "q_proj" in n or ".mlp." in n]


def test_targeted_weights_have_low_rank_state_and_the_rest_full_shape(model):
    optimizer = build_galore(model, galore_config())
    train_losses(model, optimizer, steps=2)
    targets = set(galore_targets(model, []))
    for name, p in model.named_parameters():
        exp_avg = optimizer.state[p]["exp_avg"]
        if name in targets:
            m, n = p.shape
            assert exp_avg.shape in {(RANK, n), (m, RANK)} and exp_avg.numel() < p.numel(), name
            assert optimizer.state[p]["projector"].rank == RANK
        else:
            assert exp_avg.shape == p.shape, name
            assert "projector" not in optimizer.state[p]


def test_galore_settings_and_adam_flags_reach_the_groups(model):
    cfg = galore_config(galore_update_proj_gap=7, galore_scale=0.5, galore_proj_type="left", adam_beta1=0.8,
                        adam_epsilon=1e-7, weight_decay=0.1, galore_target_modules=["v_proj"])
    optimizer = build_galore(model, cfg)
    low_rank = [g for g in optimizer.param_groups if "rank" in g]
    assert {id(p) for g in low_rank for p in g["params"]} == {id(layer.self_attn.v_proj.weight)
                                                              for layer in model.model.layers}
    assert all((g["rank"], g["update_proj_gap"], g["scale"], g["proj_type"]) == (RANK, 7, 0.5, "left")
               for g in low_rank)
    assert optimizer.defaults["betas"] == (0.8, 0.999) and optimizer.defaults["eps"] == 1e-7
    norms = {id(p) for n, p in model.named_parameters() if "norm" in n}
    for group in optimizer.param_groups:  # plain AdamW for the rest, no decay on norms
        assert group["weight_decay"] == (0.0 if {id(p) for p in group["params"]} <= norms else 0.1)


@pytest.mark.parametrize("optim", ["adamw_torch", "adafactor"])
def test_galore_lowers_the_loss_in_20_steps(model, optim):
    optimizer = build_galore(model, galore_config(optim=optim))
    assert type(optimizer).__module__ == f"galore_torch.{'adamw' if optim == 'adamw_torch' else 'adafactor'}"
    losses = train_losses(model, optimizer)
    assert losses[-1] < losses[0] - 0.1, losses


def test_the_saved_state_is_tensors_only_and_resumes_the_same_projection(model):
    import copy

    import torch

    cfg = galore_config(galore_update_proj_gap=50)
    optimizer = build_galore(model, cfg)
    train_losses(model, optimizer, steps=3)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    assert all("projector" in optimizer.state[p] for p in model.model.layers[0].self_attn.q_proj.parameters())

    twin = copy.deepcopy(model)
    resumed = build_galore(twin, cfg)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))  # as the trainer loads optimizer.pt
    q = model.model.layers[0].self_attn.q_proj.weight
    q_twin = twin.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(resumed.state[q_twin]["projector"].ortho_matrix, optimizer.state[q]["projector"].ortho_matrix)
    # two more steps (no SVD refresh before step 50) give bit-identical weights
    train_losses(model, optimizer, steps=2)
    train_losses(twin, resumed, steps=2)
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(a, b), name


def test_an_unmatched_target_is_a_clear_error(model):
    with pytest.raises(TrainError, match="--galore_target_modules nope matches no trainable 2-D weight"):
        build_galore(model, galore_config(galore_target_modules=["nope"]))


@pytest.mark.parametrize(("flags", "message"), [
    ({"optim": "sgd"}, "--optim sgd has no GaLore form"),
    ({"optim": "adamw_bnb_8bit"}, "needs a CUDA GPU"),
    ({"train_type": "lora"}, "^--optimizer galore projects the gradients of whole weight matrices; --train_type lora "
                             "trains adapters"),
    ({"train_type": "lora", "optimizer": None, "optim": "galore_adamw"}, "^--optim galore_adamw projects"),
])
def test_galore_flag_mistakes_fail_before_weights_load(flags, message):
    import torch

    if "CUDA" in message and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=message):
        check_optim_flags(galore_config(**flags))


def test_missing_galore_torch_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "galore_torch" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^--optimizer galore needs galore-torch: pip install 'swiftkit\[galore\]'$"):
        check_optim_flags(galore_config())
    with pytest.raises(ConfigError, match=r"^--optim galore_adamw needs galore-torch: pip install 'swiftkit\[galore\]'$"):
        check_optim_flags(config(optim="galore_adamw", train_type="full"))
