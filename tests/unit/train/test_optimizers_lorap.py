"""LoRA+: the LoRA B matrices (and only they) learn at ratio x the learning rate, through the schedule."""

from __future__ import annotations

import pytest
from test_optimizers import config, train_losses

from swiftkit.core.errors import ConfigError
from swiftkit.train.errors import TrainError
from swiftkit.train.optim_lorap import build_lorap
from swiftkit.train.optim_names import check_optim_flags

RATIO = 16.0


@pytest.fixture
def lora_model():
    """A tiny llama with LoRA on attention, MLP and the input embeddings, and the final norm trained whole."""
    from peft import LoraConfig, get_peft_model
    from tiny import make_tiny_model

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj", "embed_tokens"],
                      modules_to_save=["norm"])
    return get_peft_model(make_tiny_model("llama"), lora)


def groups_by_name(optimizer) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for group in optimizer.param_groups:
        out.setdefault(group["name"], []).append(group)
    return out


def ids(params) -> set[int]:
    return {id(p) for p in params}


def test_lora_b_weights_and_only_they_learn_at_ratio_times_the_rate(lora_model):
    cfg = config(lorap_lr_ratio=RATIO, learning_rate=1e-3, lorap_emb_lr=1e-5, weight_decay=0.1)
    optimizer = build_lorap(lora_model, cfg)
    groups = groups_by_name(optimizer)
    named = dict(lora_model.named_parameters())
    b_params = {id(p) for n, p in named.items() if ".lora_B." in n}
    assert len(b_params) == 6  # q_proj, v_proj and up_proj in each of the 2 layers
    in_b = set().union(*(ids(g["params"]) for g in groups["lora_B"]))
    assert in_b == b_params
    assert all(g["lr"] == pytest.approx(RATIO * 1e-3) for g in groups["lora_B"])
    assert all(g["lr"] == 1e-3 for g in groups["default"])
    assert all(g["lr"] == 1e-5 for g in groups["embedding"])
    # every trainable parameter is in exactly one group
    every = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in lora_model.parameters() if p.requires_grad)
    # the embedding adapters are theirs, lora_A matrices and the norm are in the default groups
    emb = {id(p) for n, p in named.items() if "lora_embedding" in n}
    assert emb and set().union(*(ids(g["params"]) for g in groups["embedding"])) == emb
    default = set().union(*(ids(g["params"]) for g in groups["default"]))
    assert {id(p) for n, p in named.items() if ".lora_A." in n} <= default


def test_weight_decay_only_where_it_applies(lora_model):
    optimizer = build_lorap(lora_model, config(lorap_lr_ratio=RATIO, weight_decay=0.1))
    norm = {id(p) for n, p in lora_model.named_parameters() if "modules_to_save" in n and p.requires_grad}
    assert norm
    for group in optimizer.param_groups:
        members = ids(group["params"])
        if members & norm:
            assert members <= norm and group["weight_decay"] == 0.0
        else:
            assert group["weight_decay"] == 0.1


def test_the_ratio_holds_through_the_schedule(lora_model):
    from transformers import get_scheduler

    optimizer = build_lorap(lora_model, config(lorap_lr_ratio=RATIO, learning_rate=1e-3))
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=10)
    seen = []
    for _ in range(6):
        train_losses(lora_model, optimizer, steps=1)
        schedule.step()
        groups = groups_by_name(optimizer)
        base = groups["default"][0]["lr"]
        seen.append(base)
        assert all(g["lr"] == pytest.approx(RATIO * base) for g in groups["lora_B"])
    assert seen[0] == pytest.approx(5e-4) and seen[1] == pytest.approx(1e-3)  # warm-up, then cosine decay
    assert seen[2:] == sorted(seen[2:], reverse=True) and seen[-1] < 6e-4


def test_lorap_follows_optim_for_the_optimizer_type(lora_model):
    assert type(build_lorap(lora_model, config(lorap_lr_ratio=RATIO))).__name__ == "AdamW"
    adafactor = build_lorap(lora_model, config(lorap_lr_ratio=RATIO, optim="adafactor"))
    assert type(adafactor).__module__ == "transformers.optimization"
    lion = build_lorap(lora_model, config(lorap_lr_ratio=RATIO, optim="lion_32bit", adam_beta1=0.95))
    assert type(lion).__name__ == "Lion" and lion.defaults["betas"][0] == 0.95
    adam = build_lorap(lora_model, config(lorap_lr_ratio=RATIO, adam_beta2=0.95, adam_epsilon=1e-6))
    assert adam.defaults["betas"] == (0.9, 0.95) and adam.defaults["eps"] == 1e-6


def test_lorap_lowers_the_loss_in_20_steps(lora_model):
    losses = train_losses(lora_model, build_lorap(lora_model, config(lorap_lr_ratio=RATIO, learning_rate=1e-3)))
    assert losses[-1] < losses[0] - 0.1, losses


def test_lorap_without_lora_is_a_clear_error():
    from tiny import make_tiny_model

    with pytest.raises(TrainError, match="needs LoRA B matrices .* use --train_type lora"):
        build_lorap(make_tiny_model("llama"), config(lorap_lr_ratio=RATIO))


@pytest.mark.parametrize(("flags", "message"), [
    ({"lorap_lr_ratio": RATIO, "train_type": "full"}, "--train_type full has none"),
    ({"optimizer": "lorap"}, "needs --lorap_lr_ratio"),
    ({"lorap_lr_ratio": RATIO, "optim": "galore_adamw"}, "--optim galore_adamw builds its own parameter list"),
    ({"lorap_lr_ratio": RATIO, "optimizer": "galore", "train_type": "full"}, "cannot be combined"),
])
def test_lorap_flag_mistakes_fail_before_weights_load(flags, message):
    with pytest.raises(ConfigError, match=message):
        check_optim_flags(config(**flags))
