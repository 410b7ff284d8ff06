"""PPO for language models (``swiftkit rlhf --rlhf_type ppo``) as a ``transformers.Trainer``.

TRL 1.x no longer ships a PPO trainer, so this is the method written from its definition: sample
replies (the rollout), score prompt + reply with a frozen reward model, give every reply token the
reward ``-kl_coef * (logp - ref_logp)`` plus the score at the last reply token, turn rewards and the
value model's per-token values into GAE advantages and returns, then minimise the clipped policy
loss plus ``vf_coef`` times the clipped value loss.

One Trainer step is one optimizer update. A rollout is made from the step's prompt batch every
``num_ppo_epochs`` steps and reused (cached) by the steps in between; the sampler
(:class:`RepeatedBlocks`) hands those steps the same prompts again, so every prompt is rolled out
once per pass over the data. Keeping the Trainer loop means checkpoints, resume, the LR schedule, logging and
callbacks work unchanged; the value model rides along in the optimizer, in gradient clipping, and
in ``checkpoint-N/value_model/`` (with the cached rollout in ``checkpoint-N/ppo_rollout.safetensors``,
its tensors plus its numbers as JSON metadata, so a resume mid-rollout continues exactly and nothing
in a checkpoint is unpickled).

Under DDP (several ranks) each rank rolls out its own share of the global batch; the policy's gradients
are averaged by DDP and the value model's by :func:`average_gradients` once per optimizer step, so both
stay the same on every rank. Every rollout samples from its own seed, made of --seed, the step and the
micro-batch's place in the global batch (:func:`rollout_seed`): N ranks sample exactly what one rank
with N times the accumulation samples. Each rank keeps its own cached rollout in the checkpoint
(``ppo_rollout.safetensors`` for rank 0, ``ppo_rollout.rank{R}.safetensors`` for the others).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import GenerationConfig, Trainer

from swiftkit.inference.scoring import accepts_logits_to_keep
from swiftkit.train.errors import TrainError

VALUE_MODEL_DIR = "value_model"
ROLLOUT_FILE = "ppo_rollout.safetensors"
_HEAD_NAMES = ("score", "classifier")


@dataclass
class PPOSettings:
    """The PPO knobs (the recipe fills them from RlhfArgs)."""

    kl_coef: float = 0.05
    num_ppo_epochs: int = 4
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    max_completion_length: int = 64
    temperature: float = 1.0
    missing_eos_penalty: float | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    pad_token_id: int = 0

    def __post_init__(self):
        if self.num_ppo_epochs < 1:
            raise TrainError("PPO: num_ppo_epochs must be >= 1")
        if self.max_completion_length < 1:
            raise TrainError("PPO: max_completion_length must be >= 1")
        if not self.temperature > 0:
            raise TrainError("PPO: temperature must be > 0 (replies are sampled)")
        if self.missing_eos_penalty is not None and not self.stop_token_ids:
            raise TrainError("PPO: missing_eos_penalty needs stop_token_ids (no reply could ever end otherwise)")


# -- tensor helpers ---------------------------------------------------------------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the unmasked entries (masked entries become 0)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def reply_lengths(replies: torch.Tensor, stop_token_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: tokens up to and including the first stop token (or all), and whether one was found."""
    if stop_token_ids:
        is_stop = torch.isin(replies, torch.tensor(stop_token_ids, device=replies.device))
    else:
        is_stop = torch.zeros_like(replies, dtype=torch.bool)
    has_stop = is_stop.any(dim=1)
    first = is_stop.int().argmax(dim=1)
    lengths = torch.where(has_stop, first + 1, torch.full_like(first, replies.shape[1]))
    return lengths, has_stop


def gae(rewards, values, mask, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns; ``values`` and ``rewards`` are 0 where ``mask`` is."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    steps = rewards.shape[1]
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def check_finite(name: str, value: torch.Tensor, step: int) -> None:
    """Stop with the quantity's name instead of training on NaN/inf."""
    bad = ~torch.isfinite(value.detach())
    if bad.any():
        raise TrainError(
            f"PPO: {name} is not finite at step {step} ({int(bad.sum())} of {value.numel()} values are "
            "NaN/inf); lower the learning rate, check the reward model's outputs, or train in float32"
        )


def _unwrap(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _backbone_and_head(model):
    """The transformer body and the score head of a sequence-classification model, or (None, None)."""
    inner = _unwrap(model)
    backbone = getattr(inner, getattr(inner, "base_model_prefix", ""), None)
    head = next((getattr(inner, n) for n in _HEAD_NAMES if isinstance(getattr(inner, n, None), nn.Module)), None)
    if not isinstance(backbone, nn.Module) or head is None:
        return None, None
    return backbone, head


def per_token_scores(model, ids, mask, positions) -> torch.Tensor:
    """A sequence-classification model's one-label head read at every position: ``(B, T)``.

    ``transformers`` pools at the last non-pad token, which is wrong when the pad id is also the
    end-of-turn id; running body + head keeps every position and lets the caller pick.
    """
    backbone, head = _backbone_and_head(model)
    if backbone is not None:
        hidden = backbone(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
        logits = head(hidden.last_hidden_state if hasattr(hidden, "last_hidden_state") else hidden[0])
    else:
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    if logits.dim() != 3 or logits.shape[-1] != 1:
        raise TrainError(
            f"PPO: {type(model).__name__} gives scores of shape {tuple(logits.shape)}; a reward/value model "
            "must be a sequence-classification model with num_labels=1"
        )
    return logits.squeeze(-1)


def sequence_scores(model, ids, mask, positions, last_index) -> torch.Tensor:
    """One score per row, read at ``last_index`` (a model returning pooled ``(B, 1)`` logits is used as is)."""
    backbone, _ = _backbone_and_head(model)
    if backbone is None:
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        if logits.dim() == 2 and logits.shape[-1] == 1:
            return logits.squeeze(-1)
    scores = per_token_scores(model, ids, mask, positions)
    return scores.gather(1, last_index.unsqueeze(1)).squeeze(1)


def reply_logits(model, ids, mask, positions, context_length: int, temperature: float) -> torch.Tensor:
    """Logits (over ``temperature``) at the positions that predict the reply tokens: ``(B, T, V)``."""
    steps = ids.shape[1] - context_length
    if accepts_logits_to_keep(model):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                       logits_to_keep=steps + 1).logits[:, :-1]
    else:
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
        logits = logits[:, context_length - 1 : -1]
    return logits.float() / temperature


def gathered_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def disable_dropout(model: nn.Module) -> None:
    """Dropout off in modules and in the config-driven attention dropout (ratios need equal forwards)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for attr in ("attention_dropout", "dropout", "attn_dropout"):
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, 0.0)
    config = getattr(model, "config", None)
    if config is not None:
        for key, value in config.to_dict().items():
            if key.endswith("dropout") and isinstance(value, float):
                setattr(config, key, 0.0)


class PromptCollator:
    """Left-pads ``input_ids`` prompts (generation continues from the right end)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict:
        prompts = [[int(t) for t in r["input_ids"]] for r in rows]
        if not all(prompts):
            raise TrainError("PPO: a prompt has no tokens (generation needs at least one)")
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
        return {"input_ids": ids, "attention_mask": mask}


@dataclass
class Rollout:
    """One batch of sampled replies with everything the PPO updates need (no grad)."""

    ids: torch.Tensor  # (B, P + T) left-padded prompt + right-padded reply
    mask: torch.Tensor  # (B, P + T)
    positions: torch.Tensor  # (B, P + T)
    context_length: int  # P
    reply_mask: torch.Tensor  # (B, T) float: 1 up to and including the first stop token
    logprobs: torch.Tensor  # (B, T)
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    scores: torch.Tensor  # (B,) reward-model score, less missing_eos_penalty
    stats: dict = field(default_factory=dict)

    @property
    def replies(self) -> torch.Tensor:
        return self.ids[:, self.context_length:]


_ROLLOUT_NUMBERS = ("context_length", "stats")  # the fields that are not tensors


def save_rollouts(rollouts: list[Rollout], path: str) -> None:
    """Write cached rollouts as one safetensors file: tensor ``{i}.{field}`` per rollout and field, the
    other fields as JSON in the file's metadata (nothing pickled)."""
    from safetensors.torch import save_file  # defers safetensors

    tensors, numbers = {}, []
    for i, rollout in enumerate(rollouts):
        for name in rollout.__dataclass_fields__:
            if name not in _ROLLOUT_NUMBERS:
                tensors[f"{i}.{name}"] = getattr(rollout, name).detach().contiguous().clone()
        numbers.append({name: getattr(rollout, name) for name in _ROLLOUT_NUMBERS})
    save_file(tensors, path, metadata={"rollouts": json.dumps(numbers)})


def rollout_file(rank: int) -> str:
    """The name of rank ``rank``'s cached rollout in a checkpoint."""
    return ROLLOUT_FILE if rank == 0 else ROLLOUT_FILE.replace(".safetensors", f".rank{rank}.safetensors")


def rollout_seed(seed: int, step: int, slot: int) -> int:
    """The sampling seed of the rollout of global micro-batch ``slot`` (rank x accumulation + micro-batch) at
    optimizer step ``step``: the same whatever the number of ranks the global batch is split over."""
    digest = hashlib.sha256(f"ppo-rollout:{seed}:{step}:{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def average_gradients(module: nn.Module, world_size: int) -> None:
    """Average ``module``'s gradients over the ranks (one all-reduce), as DDP does for the model it wraps."""
    import torch.distributed as dist  # defers torch

    params = [p for p in module.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for param, grad in zip(params, grads):
        param.grad = flat[offset:offset + grad.numel()].view_as(grad).clone()
        offset += grad.numel()


def load_rollouts(path: str, device) -> list[Rollout]:
    """The rollouts :func:`save_rollouts` wrote, with their tensors on ``device`` (dtypes and values exact)."""
    from safetensors import safe_open  # defers safetensors

    try:
        device = torch.device(device)  # safetensors names the CPU "cpu" (a rank's device may read "cpu:0")
        with safe_open(path, framework="pt", device="cpu" if device.type == "cpu" else str(device)) as fh:
            numbers = json.loads((fh.metadata() or {})["rollouts"])
            rollouts = []
            for i, fields in enumerate(numbers):
                tensors = {name: fh.get_tensor(f"{i}.{name}") for name in Rollout.__dataclass_fields__
                           if name not in _ROLLOUT_NUMBERS}
                rollouts.append(Rollout(**tensors, **{k: fields[k] for k in _ROLLOUT_NUMBERS}))
    except Exception as exc:  # safetensors' own error, a missing key, bad JSON: the file is not a rollout
        raise TrainError(f"{path} is not a PPO rollout file written by swiftkit ({str(exc).splitlines()[0]}); "
                         "remove it to roll out again from this checkpoint (resume then is not exact), "
                         "or resume from another checkpoint") from exc
    return rollouts


class RepeatedBlocks(torch.utils.data.Sampler):
    """Yield the ``base`` sampler's indices in blocks of ``block`` (the rows of one optimizer step),
    each block ``repeats`` times in a row.

    The step that starts a block rolls its prompts out; the ``repeats - 1`` steps after it update on
    that cached rollout and receive the same prompts, which they do not need. So every prompt is
    rolled out once per pass over the data, and each rollout gets ``repeats`` updates. A last block
    shorter than ``block`` is left out of the pass (the next pass reshuffles), so every step has
    its full set of micro-batches.
    """

    def __init__(self, base, block: int, repeats: int):
        self.base, self.block, self.repeats = base, block, repeats

    def __len__(self) -> int:
        return (len(self.base) // self.block) * self.block * self.repeats

    def __iter__(self):
        order = list(self.base)
        for start in range(0, len(order) - self.block + 1, self.block):
            chunk = order[start:start + self.block]
            for _ in range(self.repeats):
                yield from chunk


class PPOTrainer(Trainer):
    """``transformers.Trainer`` running PPO: one optimizer step per call, a new rollout every
    ``settings.num_ppo_epochs`` steps.

    ``ref_model=None`` with a peft model uses the same model under ``disable_adapter()`` as the
    reference. ``reward_model`` is frozen; ``value_model`` is trained with the policy.
    """

    def __init__(self, model, ref_model, reward_model, value_model, args, train_dataset, processing_class,
                 settings: PPOSettings, callbacks=None, data_collator=None, rollouts=None, **kwargs):
        if ref_model is None and not hasattr(model, "disable_adapter"):
            raise TrainError("PPO: full fine-tuning needs a reference model (a frozen copy of the starting model)")
        if value_model is reward_model:
            raise TrainError("PPO: the value model must be its own copy (training it would change the reward model)")
        self.settings = settings
        collator = data_collator or PromptCollator(settings.pad_token_id)
        super().__init__(model=model, args=args, train_dataset=train_dataset, processing_class=processing_class,
                         data_collator=collator, callbacks=callbacks, **kwargs)
        self.ref_model, self.reward_model, self.value_model = ref_model, reward_model, value_model
        self.rollouts = rollouts  # a ServerRollouts: a `swiftkit rollout` server samples the replies
        if rollouts is not None:
            rollouts.check_trainer(self)
        for frozen in (ref_model, reward_model):
            if frozen is not None:
                frozen.eval().requires_grad_(False)
                frozen.to(self.args.device)
        value_model.to(self.args.device)
        for m in (model, ref_model, reward_model, value_model):
            if m is not None:
                disable_dropout(m)
        self._rollouts: list[Rollout] = []
        self._step_seen, self._micro = -1, 0
        self._stats: dict[str, list[float]] = {}

    # -- data, optimizer, clipping, checkpoints ---------------------------------------------------

    def _get_train_sampler(self, train_dataset=None):
        # Private transformers.Trainer hook (5.x): the only place to wrap the training sampler.
        # Remove when Trainer takes a sampler factory.
        # The blocks are global batches: the DataLoader deals each block's micro-batches out to the ranks.
        base = super()._get_train_sampler(train_dataset)
        block = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        rows = len(self.train_dataset if train_dataset is None else train_dataset)
        if rows < block:
            raise TrainError(f"PPO needs at least --per_device_train_batch_size x --gradient_accumulation_steps x "
                             f"ranks ({block}) prompts for one rollout; the dataset has {rows}")
        return RepeatedBlocks(base, block, self.settings.num_ppo_epochs)

    def create_optimizer(self, model=None):
        """One optimizer over the policy's trainable parameters and the value model."""
        if self.optimizer is None:
            both = nn.ModuleDict({"policy": self.model, "value": self.value_model})
            super().create_optimizer(both)
        return self.optimizer

    def _clip_grad_norm(self, model):
        """One norm over policy and value gradients (Trainer alone would clip only the policy's).

        Private transformers.Trainer method (5.x). Remove when the value head is part of the trained
        module (then Trainer's own clipping covers it)."""
        params = [p for p in model.parameters() if p.requires_grad] + list(self.value_model.parameters())
        return self.accelerator.clip_grad_norm_(params, self.args.max_grad_norm)

    def _save_checkpoint(self, model, trial):
        # Private transformers.Trainer method (5.x): checkpoints must carry the value model and the
        # cached rollout for exact resume. They are written first: the Trainer writes trainer_state.json
        # last, which marks the checkpoint complete only once everything it needs is there. Remove when
        # Trainer lets a callback add files to a checkpoint before it is marked complete.
        # Every rank writes its own rollout, after rank 0 has cleared the folder (CheckpointGuard, at step end).
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        if self.args.world_size > 1:
            self.accelerator.wait_for_everyone()
        os.makedirs(folder, exist_ok=True)
        if self.args.should_save:
            self.value_model.save_pretrained(os.path.join(folder, VALUE_MODEL_DIR))
        rollout = os.path.join(folder, rollout_file(self.args.process_index))
        if self._rollouts:
            save_rollouts(self._rollouts, rollout)
        elif os.path.exists(rollout):
            os.remove(rollout)  # an earlier save's: it belongs to another rollout
        super()._save_checkpoint(model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # Private transformers.Trainer method (5.x), the counterpart of _save_checkpoint above; remove with it.
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        load_value_weights(self.value_model, os.path.join(resume_from_checkpoint, VALUE_MODEL_DIR))
        path = os.path.join(resume_from_checkpoint, rollout_file(self.args.process_index))
        if os.path.isfile(path):
            self._rollouts = load_rollouts(path, self.args.device)

    # -- rollout ------------------------------------------------------------------------------------

    @torch.no_grad()
    def rollout(self, batch: dict, index: int = 0) -> Rollout:
        """Sample replies for a left-padded prompt batch (micro-batch ``index`` of this rank's share of the
        step) and score them."""
        s, step = self.settings, self.state.global_step + 1  # as the logs number it
        policy = self.accelerator.unwrap_model(self.model)
        prompt_ids, prompt_mask = batch["input_ids"], batch["attention_mask"]
        context = prompt_ids.shape[1]
        was_training = policy.training
        policy.eval()  # use the KV cache (gradient checkpointing turns it off in train mode)
        slot = self.args.process_index * self.args.gradient_accumulation_steps + index
        devices = [prompt_ids.device] if prompt_ids.device.type == "cuda" else []
        try:
            if self.rollouts is not None:
                generated = self._served(prompt_ids, prompt_mask)
            else:
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(rollout_seed(self.args.seed, self.state.global_step, slot))
                    generated = policy.generate(
                        input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=self._generation_config()
                    )
        finally:
            policy.train(was_training)
        replies = generated[:, context:]
        lengths, has_stop = reply_lengths(replies, s.stop_token_ids)
        steps = replies.shape[1]
        reply_mask = (torch.arange(steps, device=replies.device)[None, :] < lengths[:, None]).long()
        replies = torch.where(reply_mask.bool(), replies, torch.full_like(replies, s.pad_token_id))
        ids = torch.cat([prompt_ids, replies], dim=1)
        mask = torch.cat([prompt_mask, reply_mask], dim=1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        fmask = reply_mask.float()

        logprobs = gathered_logprobs(reply_logits(policy, ids, mask, positions, context, s.temperature), replies)
        if self.ref_model is None:
            with policy.disable_adapter():
                ref_logits = reply_logits(policy, ids, mask, positions, context, s.temperature)
        else:
            ref_logits = reply_logits(self.ref_model, ids, mask, positions, context, s.temperature)
        ref_logprobs = gathered_logprobs(ref_logits, replies)
        values = per_token_scores(self.value_model, ids, mask, positions)[:, context - 1 : -1].float()
        scores = sequence_scores(self.reward_model, ids, mask, positions, context + lengths - 1).float()
        if s.missing_eos_penalty is not None:
            scores = scores - s.missing_eos_penalty * (~has_stop).float()
        check_finite("objective/scores", scores, step)
        for name, value in (("policy logprobs", logprobs), ("reference logprobs", ref_logprobs), ("values", values)):
            check_finite(name, value[reply_mask.bool()], step)  # padding after a reply is never read

        logprobs, ref_logprobs, values = logprobs * fmask, ref_logprobs * fmask, values * fmask
        kl = logprobs - ref_logprobs
        rewards = -s.kl_coef * kl
        rewards[torch.arange(len(lengths)), lengths - 1] += scores
        advantages, returns = gae(rewards, values, fmask, s.gamma, s.lam)
        advantages = masked_whiten(advantages, fmask)
        kl_sum = kl.sum(1)
        stats = {
            "objective/scores": scores.mean().item(),
            "objective/kl": kl_sum.mean().item(),
            "objective/non_score_reward": (-s.kl_coef * kl_sum).mean().item(),
            "objective/rlhf_reward": (scores - s.kl_coef * kl_sum).mean().item(),
            "completions/mean_length": lengths.float().mean().item(),
            "completions/clipped_ratio": (~has_stop).float().mean().item(),
        }
        return Rollout(ids, mask, positions, context, fmask, logprobs, ref_logprobs, values, advantages,
                       returns, scores, stats)

    def _served(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """Prompts + replies sampled by the rollout server (after it took this step's weights), as ``generate``
        returns them: each reply right-padded to the longest."""
        rows = [ids[mask.bool()].tolist() for ids, mask in zip(prompt_ids, prompt_mask)]
        replies = self.rollouts.completions(self, rows, 1)
        width = max(1, *(len(r) for r in replies))
        out = torch.full((len(rows), width), self.settings.pad_token_id, dtype=prompt_ids.dtype,
                         device=prompt_ids.device)
        for i, reply in enumerate(replies):
            out[i, :len(reply)] = torch.tensor(reply, dtype=prompt_ids.dtype)
        return torch.cat([prompt_ids, out], dim=1)

    # What a rollout server samples with (ServerRollouts reads GRPO's names): plain sampling, as _generation_config.
    @property
    def max_completion_length(self) -> int:
        return self.settings.max_completion_length

    @property
    def temperature(self) -> float:
        return self.settings.temperature

    top_p, top_k, repetition_penalty = 1.0, 0, 1.0

    @property
    def eos_token_ids(self) -> list[int]:
        return list(self.settings.stop_token_ids)

    def _generation_config(self) -> GenerationConfig:
        """Plain sampling at ``temperature``: no top-k/top-p/penalties from the model's own config, so
        the replies follow the distribution whose log-probabilities PPO uses."""
        s = self.settings
        return GenerationConfig(
            do_sample=True, temperature=s.temperature, top_k=0, top_p=1.0, typical_p=1.0, min_p=0.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1, min_length=0,
            # [] (not None): no stop tokens means none, not the model's own eos
            max_new_tokens=s.max_completion_length, eos_token_id=list(s.stop_token_ids),
            pad_token_id=s.pad_token_id,
        )

    def _rollout_for_step(self, batch: dict, index: int) -> Rollout:
        """A fresh rollout on every ``num_ppo_epochs``-th step (one per micro-batch), else the cached one."""
        step = self.state.global_step
        if step % self.settings.num_ppo_epochs == 0:
            if index == 0:
                self._rollouts = []
            self._rollouts.append(self.rollout(batch, index))
        elif index >= len(self._rollouts):  # resumed from a checkpoint saved without its rollout
            self._rollouts.append(self.rollout(batch, index))
        return self._rollouts[index]

    # -- update -------------------------------------------------------------------------------------

    def ppo_loss(self, model, r: Rollout) -> tuple[torch.Tensor, dict]:
        """Clipped policy loss + vf_coef * clipped value loss on a cached rollout."""
        s, step = self.settings, self.state.global_step + 1  # as the logs number it
        m = r.reply_mask
        logits = reply_logits(model, r.ids, r.mask, r.positions, r.context_length, s.temperature)
        logprobs = gathered_logprobs(logits, r.replies)
        check_finite("policy logprobs", logprobs[m.bool()], step)
        log_ratio = (logprobs - r.logprobs) * m
        ratio = torch.exp(log_ratio)
        pg_unclipped = -r.advantages * ratio
        pg_clipped = -r.advantages * ratio.clamp(1 - s.cliprange, 1 + s.cliprange)
        pg_loss = masked_mean(torch.max(pg_unclipped, pg_clipped), m)

        values = per_token_scores(self.value_model, r.ids, r.mask, r.positions)[:, r.context_length - 1 : -1].float()
        values_clipped = r.values + (values - r.values).clamp(-s.cliprange_value, s.cliprange_value)
        vf_unclipped = (values - r.returns) ** 2
        vf_clipped = (values_clipped - r.returns) ** 2
        vf_loss = 0.5 * masked_mean(torch.max(vf_unclipped, vf_clipped), m)
        check_finite("loss/policy", pg_loss, step)
        check_finite("loss/value", vf_loss, step)

        with torch.no_grad():
            probs = torch.softmax(logits, dim=-1)
            entropy = torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)
            stats = {
                "loss/policy": pg_loss.item(),
                "loss/value": vf_loss.item(),
                "policy/clipfrac": masked_mean((pg_clipped > pg_unclipped).float(), m).item(),
                "policy/approxkl": (0.5 * masked_mean(log_ratio**2, m)).item(),
                "policy/entropy": masked_mean(entropy, m).item(),
                "val/ratio": masked_mean(ratio, m).item(),
                "val/clipfrac": masked_mean((vf_clipped > vf_unclipped).float(), m).item(),
            }
        return pg_loss + s.vf_coef * vf_loss, stats

    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        self.value_model.train()
        inputs = self._prepare_inputs(inputs)
        if self.state.global_step != self._step_seen:  # first micro-batch of an optimizer step
            self._step_seen, self._micro = self.state.global_step, 0
            self.value_model.zero_grad(set_to_none=True)  # Trainer zeroes only the policy's gradients
        index, self._micro = self._micro, self._micro + 1
        rollout = self._rollout_for_step(inputs, index)
        with self.compute_loss_context_manager():
            loss, stats = self.ppo_loss(model, rollout)
        for name, value in {**rollout.stats, **stats}.items():
            self._stats.setdefault(name, []).append(value)
        loss = loss / getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        self.accelerator.backward(loss)
        if self.args.world_size > 1 and self.accelerator.sync_gradients:  # the step's last micro-batch
            average_gradients(self.value_model, self.args.world_size)
        return loss.detach()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        raise TrainError("PPO has no evaluation loss: train without --eval_strategy / eval_dataset")

    def _stat_sums(self) -> dict[str, tuple[float, int]]:
        """Each statistic's sum and count since the last log, over every rank's micro-batches."""
        names = sorted(self._stats)
        sums = torch.tensor([[sum(self._stats[n]), len(self._stats[n])] for n in names], dtype=torch.float64)
        if self.args.world_size > 1:
            import torch.distributed as dist  # defers torch

            sums = sums.to(self.args.device)
            dist.all_reduce(sums)
        return {name: (float(total), int(count)) for name, (total, count) in zip(names, sums.tolist())}

    def log(self, logs: dict, start_time=None) -> None:
        """Add the PPO statistics (means since the last log) to the training logs."""
        if "loss" in logs and self._stats:
            for name, (total, count) in self._stat_sums().items():
                logs[name] = total / count
                if not math.isfinite(logs[name]):
                    raise TrainError(f"PPO: {name} is not finite at step {self.state.global_step}")
            self._stats = {}
        super().log(logs, start_time)


def load_value_weights(model: nn.Module, folder: str) -> None:
    """Copy the weights a ``save_pretrained`` wrote into ``folder`` into ``model`` (in place, so the
    optimizer keeps its parameters)."""
    from safetensors.torch import load_file  # defers safetensors

    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors")) if os.path.isdir(folder) else []
    if not files:
        raise TrainError(f"{folder} holds no value-model weights: cannot resume PPO from this checkpoint")
    state = {}
    for name in files:
        state.update(load_file(os.path.join(folder, name)))
    missing, unexpected = _unwrap(model).load_state_dict(state, strict=False)
    if missing or unexpected:
        raise TrainError(
            f"{folder} does not match the value model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
