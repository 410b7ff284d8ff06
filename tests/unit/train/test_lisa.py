"""LISA: within an interval only the sampled decoder layers change (the others stay bit-identical, weight
decay and momentum included), embeddings and head train throughout, and the sample for an interval
depends only on the seed and the interval's index."""

from __future__ import annotations

import pytest
from test_optimizers import config

from swiftkit.core.errors import ConfigError
from swiftkit.train.errors import TrainError
from swiftkit.train.lisa import build_lisa, lisa_sample

LAYERS = 4


def test_the_sample_depends_only_on_seed_and_interval():
    assert lisa_sample(42, 3, 8, 2) == lisa_sample(42, 3, 8, 2)
    samples = [lisa_sample(42, i, 8, 2) for i in range(20)]
    assert all(len(s) == 2 and len(set(s)) == 2 and all(0 <= i < 8 for i in s) for s in samples)
    assert len({tuple(s) for s in samples}) > 5  # resampled, not fixed
    assert [lisa_sample(7, i, 8, 2) for i in range(20)] != samples


def four_layer_model():
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("llama", vocab_size=512, hidden_size=64, intermediate_size=128,
                               num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)


def snapshots_while_training(tmp_path, *, steps: int, interval: int, active: int, accumulation: int = 1):
    """Train with LISA in a real Trainer; a copy of every weight before the first step and after each step."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    model = four_layer_model()
    torch.manual_seed(1)
    rows = [{"input_ids": ids, "labels": ids} for ids in torch.randint(1, 512, (16, 12))]
    seen = []

    class Snapshot(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen.append({n: p.detach().clone() for n, p in model.named_parameters()})

        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen.append({n: p.detach().clone() for n, p in model.named_parameters()})

    lisa = build_lisa(config(train_type="full", lisa_activated_layers=active, lisa_step_interval=interval, seed=5))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=2,
                             gradient_accumulation_steps=accumulation, learning_rate=1e-2, weight_decay=0.1,
                             report_to="none", save_strategy="no", logging_steps=1, use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[Snapshot(), lisa])
    trainer.train()
    return model, seen


def changed_layers(before: dict, after: dict) -> list[int]:
    return sorted({int(n.split(".")[2]) for n in before if n.startswith("model.layers.")
                   and not torch_equal(before[n], after[n])})


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_only_the_sampled_layers_change_within_an_interval(tmp_path, accumulation):
    steps, interval, active = 6, 2, 1
    model, seen = snapshots_while_training(tmp_path, steps=steps, interval=interval, active=active,
                                           accumulation=accumulation)
    samples = []
    for step in range(1, steps + 1):
        expected = lisa_sample(5, (step - 1) // interval, LAYERS, active)
        before, after = seen[step - 1], seen[step]
        assert changed_layers(before, after) == expected, f"step {step}"
        for name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
            assert not torch_equal(before[name], after[name]), (name, step)  # train throughout
        samples.append(tuple(expected))
    assert len(set(samples)) >= 2  # after an interval boundary a new sample trains
    assert all(p.requires_grad for p in model.parameters())  # given back as trainable when training ends


def test_more_active_layers_than_the_model_has_is_a_clear_error(tmp_path):
    with pytest.raises(TrainError, match=f"--lisa_activated_layers 5 exceeds the model's {LAYERS} decoder layers"):
        snapshots_while_training(tmp_path, steps=1, interval=1, active=5)


def test_lisa_needs_full_training():
    with pytest.raises(ConfigError, match="needs --train_type full, not lora"):
        build_lisa(config(lisa_activated_layers=1))
