"""PPO trainer on tiny real models: the loop runs and logs, the reference is the adapter-free base,
a reward is learned, checkpoints hold the value model and resume continues exactly."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from swiftkit.train.errors import TrainError
from swiftkit.train.ppo import (
    PPOSettings,
    PPOTrainer,
    PromptCollator,
    gae,
    gathered_logprobs,
    reply_lengths,
    reply_logits,
)

LOGGED = ["objective/scores", "objective/kl", "objective/rlhf_reward", "loss/policy", "loss/value",
          "policy/clipfrac", "policy/approxkl", "policy/entropy", "val/ratio", "completions/mean_length"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    from tiny import make_tokenizer

    return make_tokenizer("chatml")


def _prompts(tok, n=8):
    questions = ["Hello!", "What is the capital of France?", "Write a poem.", "Numbers: 1 2 3"]
    return [
        {"input_ids": tok.apply_chat_template([{"role": "user", "content": questions[i % 4]}],
                                              add_generation_prompt=True, tokenize=True, return_dict=False)}
        for i in range(n)
    ]


def _policy(tok, lora=True, seed=0, init_lora_weights=True):
    from peft import LoraConfig, get_peft_model
    from tiny import make_tiny_model

    model = make_tiny_model(vocab_size=len(tok), seed=seed)
    if not lora:
        return model
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.1,
                        init_lora_weights=init_lora_weights)
    return get_peft_model(model, config)


def _scorer(tok, seed=1):
    """A tiny one-label sequence-classification model (reward or value)."""
    from tiny import make_tiny_model
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(make_tiny_model(vocab_size=len(tok)).config)
    config.num_labels, config.pad_token_id = 1, tok.pad_token_id
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config)


def _settings(tok, **kw):
    base = {"kl_coef": 0.05, "num_ppo_epochs": 2, "max_completion_length": 8,
            "stop_token_ids": [tok.eos_token_id], "pad_token_id": tok.pad_token_id}
    return PPOSettings(**{**base, **kw})


def _args(tmp_path, **kw):
    from transformers import TrainingArguments

    base = {"output_dir": str(tmp_path), "max_steps": 4, "per_device_train_batch_size": 4, "learning_rate": 1e-3,
            "logging_steps": 1, "save_strategy": "no", "report_to": [], "use_cpu": True, "disable_tqdm": True,
            "seed": 0, "lr_scheduler_type": "constant"}
    return TrainingArguments(**{**base, **kw})


def _trainer(tok, tmp_path, policy=None, ref=None, reward=None, value=None, settings=None, n=8, **args):
    return PPOTrainer(
        model=policy if policy is not None else _policy(tok),
        ref_model=ref,
        reward_model=reward if reward is not None else _scorer(tok, seed=1),
        value_model=value if value is not None else _scorer(tok, seed=2),
        args=_args(tmp_path, **args),
        train_dataset=_prompts(tok, n),
        processing_class=tok,
        settings=settings or _settings(tok),
    )


def _logs(trainer):
    return [h for h in trainer.state.log_history if "objective/scores" in h]


# -- helpers ------------------------------------------------------------------------------------------


def test_collator_left_pads():
    batch = PromptCollator(0)([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_reply_lengths_stop_at_first_stop_token():
    replies = torch.tensor([[4, 9, 5, 9], [4, 4, 4, 4], [9, 4, 4, 4]])
    lengths, has_stop = reply_lengths(replies, [9])
    assert lengths.tolist() == [2, 4, 1]
    assert has_stop.tolist() == [True, False, True]


def test_gae_matches_direct_sum():
    g, lam = 0.9, 0.8
    rewards = torch.tensor([[0.1, -0.2, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.3, 0.2, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, g, lam)
    v = values[0].tolist() + [0.0]
    deltas = [rewards[0, t].item() + g * v[t + 1] - v[t] for t in range(3)]
    expected = [sum((g * lam) ** (k - t) * deltas[k] for k in range(t, 3)) for t in range(3)]
    assert torch.allclose(adv[0, :3], torch.tensor(expected), atol=1e-6)
    assert adv[0, 3] == 0 and torch.allclose(ret, (adv + values) * mask)


def test_missing_eos_penalty_needs_stop_tokens():
    with pytest.raises(TrainError, match="stop_token_ids"):
        PPOSettings(missing_eos_penalty=1.0, stop_token_ids=[])


# -- training -----------------------------------------------------------------------------------------


def test_lora_ppo_trains_policy_adapter_and_value_model(tok, tmp_path):
    trainer = _trainer(tok, tmp_path)
    policy, value = trainer.model, trainer.value_model
    lora0 = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" in n}
    base0 = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" not in n}
    value0 = {n: p.detach().clone() for n, p in value.named_parameters()}
    trainer.train()

    logs = _logs(trainer)
    assert len(logs) == 4
    for entry in logs:
        for name in LOGGED:
            assert math.isfinite(entry[name]), (name, entry)
    assert abs(logs[0]["objective/kl"]) < 1e-4  # LoRA B starts at 0: policy == reference
    assert logs[0]["val/ratio"] == pytest.approx(1.0, abs=1e-5)  # first update: old == new logprobs
    assert 1 <= logs[0]["completions/mean_length"] <= 8
    params = dict(policy.named_parameters())
    assert any(not torch.equal(params[n], p) for n, p in lora0.items() if "lora_B" in n)
    assert all(torch.equal(params[n], p) for n, p in base0.items())
    vparams = dict(value.named_parameters())
    assert any(not torch.equal(vparams[n], p) for n, p in value0.items() if "score" in n)
    assert any(not torch.equal(vparams[n], p) for n, p in value0.items() if "layers" in n)


def test_reference_is_the_adapter_free_base(tok, tmp_path):
    from tiny import make_tiny_model

    policy = _policy(tok, init_lora_weights=False)  # random LoRA B: the policy differs from its base
    trainer = _trainer(tok, tmp_path, policy=policy)
    batch = PromptCollator(tok.pad_token_id)(_prompts(tok, 4))
    r = trainer.rollout(batch)

    fresh = make_tiny_model(vocab_size=len(tok), seed=0)
    with torch.no_grad():
        expected = gathered_logprobs(reply_logits(fresh, r.ids, r.mask, r.positions, r.context_length, 1.0),
                                     r.replies) * r.reply_mask
    assert torch.allclose(r.ref_logprobs, expected, atol=1e-5)
    assert not torch.allclose(r.logprobs, expected, atol=1e-3)
    assert trainer.model.active_adapters == ["default"]  # the adapter is back on after the reference pass
    assert r.stats["objective/kl"] != 0


class LastTokenReward(nn.Module):
    """Per-position scores equal to the token id, so the score read tells which position was used."""

    def forward(self, input_ids, attention_mask, position_ids=None):
        return SimpleNamespace(logits=input_ids.float().unsqueeze(-1))


def test_replies_end_at_the_first_stop_token_and_are_scored_there(tok, tmp_path):
    stops = list(range(13, 300))  # most sampled tokens stop the reply
    settings = _settings(tok, stop_token_ids=stops, missing_eos_penalty=1000.0)
    trainer = _trainer(tok, tmp_path, reward=LastTokenReward(), settings=settings)
    r = trainer.rollout(PromptCollator(tok.pad_token_id)(_prompts(tok, 8)))
    lengths = r.reply_mask.sum(1).long()
    for i, n in enumerate(lengths.tolist()):
        reply = r.replies[i].tolist()
        stopped = reply[n - 1] in stops
        assert all(t not in stops for t in reply[: n - 1])  # no earlier stop token
        assert stopped or n == 8
        assert all(t == tok.pad_token_id for t in reply[n:])  # padded after the stop
        assert r.scores[i].item() == reply[n - 1] - (0.0 if stopped else 1000.0)
    assert lengths.float().mean().item() == pytest.approx(r.stats["completions/mean_length"])
    assert lengths.min() < 8


def test_no_stop_tokens_means_full_length_replies(tok, tmp_path):
    """The model's own eos (here most of the vocabulary) must not end replies when no stop token is set."""
    policy = _policy(tok)
    policy.generation_config.eos_token_id = list(range(13, 300))
    trainer = _trainer(tok, tmp_path, policy=policy, settings=_settings(tok, stop_token_ids=[]))
    r = trainer.rollout(PromptCollator(tok.pad_token_id)(_prompts(tok, 8)))
    assert r.replies.shape[1] == 8 and bool(r.reply_mask.all())
    assert r.stats["completions/clipped_ratio"] == 1.0


def test_real_reward_model_score_equals_its_own_pooled_score(tok, tmp_path):
    reward = _scorer(tok, seed=1)
    trainer = _trainer(tok, tmp_path, reward=reward, settings=_settings(tok, stop_token_ids=list(range(13, 60))))
    r = trainer.rollout(PromptCollator(tok.pad_token_id)(_prompts(tok, 4)))
    with torch.no_grad():
        for i in range(4):
            alone = r.ids[i][r.mask[i].bool()].unsqueeze(0)  # no padding on either side
            assert r.scores[i].item() == pytest.approx(reward(input_ids=alone).logits[0, 0].item(), abs=1e-5)


def test_gradient_accumulation_caches_one_rollout_per_micro_batch(tok, tmp_path):
    trainer = _trainer(tok, tmp_path, max_steps=2, per_device_train_batch_size=2, gradient_accumulation_steps=2)
    trainer.train()
    assert trainer.state.global_step == 2
    assert len(trainer._rollouts) == 2
    assert not torch.equal(trainer._rollouts[0].ids, trainer._rollouts[1].ids)
    assert all(math.isfinite(h[n]) for h in _logs(trainer) for n in LOGGED)


class FavouredTokenReward(nn.Module):
    """Scores a sequence by how many of its tokens lie in ``favoured`` (pooled (B, 1) logits)."""

    def __init__(self, favoured: torch.Tensor):
        super().__init__()
        self.register_buffer("favoured", favoured)

    def forward(self, input_ids, attention_mask, position_ids=None):
        hits = torch.isin(input_ids, self.favoured) & attention_mask.bool()
        return SimpleNamespace(logits=hits.float().sum(1, keepdim=True))


def test_reward_for_favoured_tokens_rises(tok, tmp_path):
    """A reward for 64 of ~525 tokens (about 1 in 8 sampled at the start): the score of 8-token replies
    climbs from ~1 within six rollouts. LoRA on q/v alone moves a random tiny model's near-uniform
    output too slowly, so the adapter covers every linear layer and the LM head here."""
    from peft import LoraConfig, get_peft_model
    from tiny import make_tiny_model

    targets = ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
    policy = get_peft_model(make_tiny_model(vocab_size=len(tok)), LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    settings = _settings(tok, kl_coef=0.0, num_ppo_epochs=4, stop_token_ids=[], vf_coef=0.5)
    trainer = _trainer(tok, tmp_path, policy=policy, reward=FavouredTokenReward(torch.arange(100, 164)),
                       settings=settings, n=64, max_steps=24, learning_rate=3e-2, per_device_train_batch_size=16)
    trainer.train()
    per_rollout = [h["objective/scores"] for h in _logs(trainer)][::4]
    assert len(per_rollout) == 6
    assert per_rollout[0] < 2.0, per_rollout
    assert sum(per_rollout[-2:]) / 2 > per_rollout[0] + 1.5, per_rollout


def test_nan_score_stops_with_its_name(tok, tmp_path):
    class NanReward(nn.Module):
        def forward(self, input_ids, attention_mask, position_ids=None):
            return SimpleNamespace(logits=torch.full((input_ids.shape[0], 1), float("nan")))

    trainer = _trainer(tok, tmp_path, reward=NanReward(), max_steps=1)
    with pytest.raises(TrainError, match="objective/scores is not finite"):
        trainer.train()


def test_checkpoint_holds_value_model_and_resume_continues_exactly(tok, tmp_path):
    from peft import PeftModel
    from tiny import make_tiny_model
    from transformers import AutoModelForSequenceClassification

    full = _trainer(tok, tmp_path / "a", save_strategy="steps", save_steps=3)
    full.train()
    ckpt = tmp_path / "a" / "checkpoint-3"
    assert (ckpt / "adapter_model.safetensors").is_file()
    assert (ckpt / "value_model" / "config.json").is_file()
    assert (ckpt / "ppo_rollout.safetensors").is_file()  # step 3 of a 2-step rollout cycle needs it
    PeftModel.from_pretrained(make_tiny_model(vocab_size=len(tok)), str(ckpt))  # plain peft loads it
    saved_value = AutoModelForSequenceClassification.from_pretrained(str(ckpt / "value_model"))

    # Resume with a differently initialised value model: the checkpoint's must replace it.
    resumed = _trainer(tok, tmp_path / "a", value=_scorer(tok, seed=7), save_strategy="no")
    loaded = {}
    original = resumed._load_from_checkpoint

    def spy(path, model=None):
        original(path, model)
        loaded.update({n: p.detach().clone() for n, p in resumed.value_model.named_parameters()})

    resumed._load_from_checkpoint = spy
    resumed.train(resume_from_checkpoint=str(ckpt))
    for n, p in saved_value.named_parameters():
        assert torch.equal(loaded[n], p), n
    assert resumed.state.global_step == 4
    assert [h["step"] for h in _logs(resumed)] == [1, 2, 3, 4]  # history from the checkpoint + step 4
    for (n, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n
    for (n, a), (_, b) in zip(full.value_model.named_parameters(), resumed.value_model.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_full_finetuning_with_frozen_reference_copy(tok, tmp_path):
    policy = _policy(tok, lora=False)
    ref = copy.deepcopy(policy)
    ref0 = {n: p.detach().clone() for n, p in ref.named_parameters()}
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    trainer = _trainer(tok, tmp_path, policy=policy, ref=ref, max_steps=2)
    trainer.train()
    logs = _logs(trainer)
    assert len(logs) == 2 and all(math.isfinite(h[n]) for h in logs for n in LOGGED)
    assert abs(logs[0]["objective/kl"]) < 1e-4
    assert any(not torch.equal(p, before[n]) for n, p in policy.named_parameters())
    assert all(torch.equal(p, ref0[n]) for n, p in ref.named_parameters())


def test_full_finetuning_without_reference_is_refused(tok, tmp_path):
    with pytest.raises(TrainError, match="reference model"):
        _trainer(tok, tmp_path, policy=_policy(tok, lora=False))


@pytest.mark.parametrize("accumulation", [1, 2])
def test_one_pass_rolls_out_every_prompt_once(tok, tmp_path, accumulation):
    """8 distinct prompts, 2 rows per micro-batch, 2 updates per rollout: one epoch rolls each prompt
    out exactly once (the steps between rollouts get the same prompts again and reuse the cache)."""
    questions = [f"Question {i}?" for i in range(8)]
    data = [{"input_ids": tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                                  tokenize=True, return_dict=False)} for q in questions]
    trainer = _trainer(tok, tmp_path, max_steps=-1, num_train_epochs=1, per_device_train_batch_size=2,
                       gradient_accumulation_steps=accumulation)
    trainer.train_dataset = data
    seen = []
    original = trainer.rollout

    def recording(batch, index=0):
        for row in batch["input_ids"]:
            seen.append(tok.decode(row[row != tok.pad_token_id]))
        return original(batch, index)

    trainer.rollout = recording
    trainer.train()
    assert trainer.state.global_step == 8 // (2 * accumulation) * 2  # rollouts x updates per rollout
    assert sorted(seen) == sorted(tok.decode(d["input_ids"]) for d in data)


def test_fewer_prompts_than_one_step_needs_is_refused(tok, tmp_path):
    trainer = _trainer(tok, tmp_path, n=2, per_device_train_batch_size=4)
    with pytest.raises(TrainError, match="needs at least"):
        trainer.train()


def test_rollouts_round_trip_exactly_through_safetensors(tmp_path):
    """The cached rollout of a checkpoint is tensors plus JSON numbers: nothing is pickled, and dtypes,
    values and statistics come back exactly (resume continues the same run)."""
    from safetensors import safe_open

    from swiftkit.train.ppo import Rollout, load_rollouts, save_rollouts

    gen = torch.Generator().manual_seed(0)
    rollouts = []
    for context in (3, 5):
        ids = torch.randint(0, 100, (2, context + 4), generator=gen)
        floats = [torch.randn(2, 4, generator=gen) for _ in range(6)]
        rollouts.append(Rollout(ids, torch.ones_like(ids), torch.arange(context + 4).expand(2, -1), context,
                                (floats[0] > 0).float(), *floats[1:], torch.randn(2, generator=gen),
                                {"objective/kl": 0.1 + context, "objective/scores": -1 / 3}))
    path = tmp_path / "ppo_rollout.safetensors"
    save_rollouts(rollouts, str(path))
    loaded = load_rollouts(str(path), "cpu")
    assert len(loaded) == 2
    for a, b in zip(rollouts, loaded):
        assert a.context_length == b.context_length and a.stats == b.stats
        for name in Rollout.__dataclass_fields__:
            if isinstance(getattr(a, name), torch.Tensor):
                assert getattr(a, name).dtype == getattr(b, name).dtype, name
                assert torch.equal(getattr(a, name), getattr(b, name)), name
    with safe_open(str(path), framework="pt") as fh:  # a plain safetensors file any reader opens
        assert "0.ids" in list(fh.keys()) and "rollouts" in fh.metadata()


def test_a_rollout_file_of_something_else_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    from swiftkit.train.ppo import load_rollouts

    save_file({"w": torch.zeros(2)}, tmp_path / "ppo_rollout.safetensors")
    with pytest.raises(TrainError, match="not a PPO rollout file"):
        load_rollouts(str(tmp_path / "ppo_rollout.safetensors"), "cpu")


def test_a_rollout_seed_names_its_place_in_the_global_batch_alone():
    from swiftkit.train.ppo import rollout_seed

    seeds = {rollout_seed(42, step, slot) for step in range(4) for slot in range(4)}
    assert len(seeds) == 16 and all(0 <= s < 2**63 for s in seeds)  # one per step and slot
    assert rollout_seed(42, 3, 1) == rollout_seed(42, 3, 1) != rollout_seed(43, 3, 1)
