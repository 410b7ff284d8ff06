"""--optim: every transformers optimizer name either trains here or is refused before weights load with one
line naming what it needs; the Adam flags and --optim_args reach the optimizer the trainer builds."""

from __future__ import annotations

import pytest

from swiftkit.config import SftConfig
from swiftkit.core.errors import ConfigError
from swiftkit.train.optim_names import check_optim_flags, optim_names, optim_problem, optimizer_name
from swiftkit.train.optim_params import optim_class_and_kwargs

# Built by --optimizer galore (tested in test_optimizers_galore.py), not by the trainer's handler.
GALORE_BUILT = {"galore_adamw", "galore_adafactor", "galore_adamw_8bit"}


def config(**flags) -> SftConfig:
    return SftConfig.from_flat({"model": "tiny", "dataset": ["rows.jsonl"], "learning_rate": 1e-2, **flags})


def batch():
    import torch

    torch.manual_seed(0)
    ids = torch.randint(1, 512, (2, 16))
    return {"input_ids": ids, "labels": ids}


def train_losses(model, optimizer, steps: int = 20) -> list[float]:
    """Losses of ``steps`` optimizer steps on one fixed batch."""
    model.train()
    if callable(getattr(optimizer, "train", None)):  # schedule-free optimizers: the trainer switches them too
        optimizer.train()
    inputs, losses = batch(), []
    for _ in range(steps):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def build(cfg, model):
    """The optimizer the trainer builds for ``--optim`` (the same class and arguments, one param group)."""
    cls, kwargs = optim_class_and_kwargs(cfg, model)
    return cls([p for p in model.parameters() if p.requires_grad], **kwargs)


def runnable() -> list[str]:
    return [n for n in optim_names() if optim_problem(n) is None and n not in GALORE_BUILT]


def test_the_optimizers_that_run_on_this_cpu_are_the_expected_ones():
    """bitsandbytes 0.50 runs its 8-bit and paged optimizers on the CPU; adamw_torch_fused has a CPU kernel."""
    expected = {"adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop", "ademamix",
                "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit",
                "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit",
                "paged_lion_8bit", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit"}
    assert expected <= set(runnable())


@pytest.mark.parametrize("name", runnable())
def test_each_runnable_optim_lowers_the_loss_in_20_steps(name):
    from tiny import make_tiny_model

    model = make_tiny_model("llama")
    losses = train_losses(model, build(config(optim=name), model))
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.parametrize("name", [n for n in optim_names() if optim_problem(n) is not None])
def test_each_optim_that_cannot_run_here_says_what_it_needs_in_one_line(name):
    problem = optim_problem(name)
    assert "\n" not in problem and problem.startswith(f"--optim {name}")
    assert any(word in problem for word in ("pip install", "needs a CUDA GPU", "device", "NPU", "package",
                                            "instead")), problem
    with pytest.raises(ConfigError, match=f"^--optim {name}"):
        check_optim_flags(config(optim=name))


@pytest.mark.parametrize(("name", "cls"), [
    ("adamw_torch", "torch.optim.adamw.AdamW"), ("adafactor", "transformers.optimization.Adafactor"),
    ("sgd", "torch.optim.sgd.SGD"), ("lion_8bit", "bitsandbytes.optim.lion.Lion"),
    ("paged_adamw_8bit", "bitsandbytes.optim.adamw.AdamW"), ("rmsprop", "torch.optim.rmsprop.RMSprop"),
])
def test_optim_names_the_optimizer_class(name, cls):
    from tiny import make_tiny_model

    optimizer = build(config(optim=name), make_tiny_model("llama"))
    assert f"{type(optimizer).__module__}.{type(optimizer).__name__}" == cls


def test_8bit_optimizers_keep_8bit_state_on_the_cpu():
    import torch
    from tiny import make_tiny_model

    model = make_tiny_model("llama")
    optimizer = build(config(optim="adamw_bnb_8bit"), model)
    train_losses(model, optimizer, steps=1)
    state = optimizer.state[model.model.layers[0].mlp.up_proj.weight]  # 8192 values: over bnb's 4096 minimum
    assert state["state1"].dtype == torch.uint8


def test_adam_flags_reach_the_optimizer():
    from tiny import make_tiny_model

    cfg = config(adam_beta1=0.8, adam_beta2=0.95, adam_epsilon=1e-6)
    defaults = build(cfg, make_tiny_model("llama")).defaults
    assert defaults["betas"] == (0.8, 0.95) and defaults["eps"] == 1e-6 and defaults["lr"] == 1e-2


def test_optim_args_are_parsed_by_transformers():
    from tiny import make_tiny_model

    defaults = build(config(optim="sgd", optim_args="momentum=0.9, nesterov=True"), make_tiny_model("llama")).defaults
    assert defaults["momentum"] == 0.9 and defaults["nesterov"] is True


def test_an_unknown_optim_is_one_line_with_the_closest_name_and_all_valid_ones():
    with pytest.raises(ConfigError) as err:
        check_optim_flags(config(optim="adamw_torhc"))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("--optim 'adamw_torhc' is not a transformers optimizer")
    assert "did you mean 'adamw_torch'?" in msg
    assert all(name in msg for name in optim_names())


def test_missing_packages_name_the_extra_or_package():
    import importlib.util

    if importlib.util.find_spec("torchao") is None:
        assert optim_problem("adamw_torch_4bit") == "--optim adamw_torch_4bit needs torchao: pip install torchao"
    if importlib.util.find_spec("schedulefree") is None:
        assert "pip install schedulefree" in optim_problem("schedule_free_adamw")
    assert optim_problem("lion_8bit") is None  # bitsandbytes is installed with the dev extras


def test_layerwise_optimizers_are_refused_with_the_reason():
    problem = optim_problem("galore_adamw_layerwise")
    assert "learning-rate schedule" in problem and "use --optim galore_adamw" in problem


def test_optim_galore_names_are_built_by_the_galore_optimizer():
    assert optimizer_name(config(optim="galore_adamw")) == "galore"
    assert optimizer_name(config(optim="adamw_torch")) is None
    assert optimizer_name(config(lorap_lr_ratio=16.0)) == "lorap"


def test_a_plugin_optimizer_ignores_optim_but_its_name_is_still_checked():
    check_optim_flags(config(optimizer="my_plugin_opt", optim="adamw_torch_4bit"))  # --optim unused: no error
    with pytest.raises(ConfigError, match="did you mean 'sgd'"):
        check_optim_flags(config(optimizer="my_plugin_opt", optim="sdg"))
