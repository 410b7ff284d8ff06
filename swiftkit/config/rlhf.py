"""Field groups of `swiftkit rlhf`, one per method family, as TRL has DPOConfig, KTOConfig, GRPOConfig...

The flat flags are the same whichever group owns them (``--beta``, ``--dpo_loss_type``,
``--num_generations``); in code they are ``config.rlhf.beta``, ``config.dpo.dpo_loss_type``,
``config.grpo.num_generations``. Rules between groups (a flag given to a method that ignores it, a
batch that is not a multiple of the group size) are in :class:`swiftkit.config.commands.RlhfConfig`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from swiftkit.config.groups import _check, arg
from swiftkit.core.errors import ConfigError
from swiftkit.core.registry import closest

RLHF_TYPES = ("dpo", "orpo", "simpo", "cpo", "kto", "rm", "ppo", "grpo")
REFERENCE_FREE = ("orpo", "simpo", "cpo", "rm")
# --beta when it is not given: the value each method's paper (and TRL) starts from.
DEFAULT_BETA = {"dpo": 0.1, "orpo": 0.1, "simpo": 2.0, "cpo": 0.1, "kto": 0.1, "grpo": 0.04, "ppo": 0.05}
GRPO_LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


def _one_of(value: str, valid, flag: str) -> None:
    _check(value in valid, f"unknown {flag} {value!r}{closest(value, valid)}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class RlhfArgs:
    """What every method shares: the method, where training starts, the reference and reward models."""

    rlhf_type: str = arg(
        "dpo", "Alignment method: dpo, orpo, simpo, cpo, kto (preference or labelled data), rm (a reward "
        "model from preference pairs), ppo (online, needs --reward_model) or grpo (online, needs "
        "--reward_funcs and/or --reward_model)."
    )
    adapters: list[str] = arg(
        [], "A trained LoRA checkpoint (or run directory) to continue from, e.g. an SFT run: it is the starting "
        "policy and the reference; the base model and template come from its args.json."
    )
    beta: Optional[float] = arg(
        None, "dpo/cpo/kto: inverse temperature of the implicit reward; simpo: reward scale; orpo: weight "
        "of the odds-ratio term; grpo/ppo: KL coefficient. Default per method: dpo 0.1, orpo 0.1, "
        "simpo 2.0, cpo 0.1, kto 0.1, grpo 0.04, ppo 0.05."
    )
    ref_model: Optional[str] = arg(
        None, "dpo/kto/grpo/ppo: reference model (path, hub id or registered name). Default: the "
        "trained model's starting point, i.e. the base with adapters disabled under LoRA (no second "
        "copy in memory), a frozen copy under full/freeze."
    )
    precompute_ref_log_probs: bool = arg(
        False, "dpo/kto: compute the reference log-probs of every row once before training; full/freeze "
        "training then keeps no reference copy in memory.",
        methods=("dpo", "kto"),
    )
    reward_model: Optional[str] = arg(
        None, "ppo (required) / grpo: a reward model (an `rlhf --rlhf_type rm` run or checkpoint, or a "
        "sequence-classification model directory) that scores prompt + reply.",
        methods=("ppo", "grpo"),
    )

    def __post_init__(self):
        _one_of(self.rlhf_type, RLHF_TYPES, "--rlhf_type")
        _check(self.beta is None or self.beta >= 0, "--beta must be >= 0")

    @property
    def beta_value(self) -> float:
        """--beta, or the method's default."""
        return DEFAULT_BETA.get(self.rlhf_type, 0.1) if self.beta is None else self.beta


@dataclass(frozen=True)
class DpoArgs:
    """DPO's loss variants (TRL's DPOConfig) and the label smoothing DPO and CPO share."""

    dpo_loss_type: list[str] = arg(
        ["sigmoid"], "dpo: loss variants (TRL's: sigmoid, hinge, ipo, robust, bco_pair, sppo_hard, "
        "apo_zero, apo_down, discopop, sft, ...); several are summed with --dpo_loss_weights.",
        methods=("dpo",),
    )
    dpo_loss_weights: list[float] = arg(
        [], "dpo: weight of each --dpo_loss_type (default 1 each). Alias: --loss_weights.", methods=("dpo",),
        aliases=("loss_weights",),
    )
    label_smoothing: float = arg(0.0, "dpo/cpo: probability that a preference label is flipped (robust/cDPO).",
                                 methods=("dpo", "cpo", "simpo"))
    rpo_alpha: Optional[float] = arg(
        None, "dpo: add this weight of NLL on the chosen reply (RPO); same as adding the sft loss type.",
        methods=("dpo",),
    )

    def __post_init__(self):
        for name in self.dpo_loss_type:
            _one_of(name, DPO_LOSS_TYPES, "--dpo_loss_type")
        _check(not self.dpo_loss_weights or len(self.dpo_loss_weights) == len(self.dpo_loss_type),
               f"--dpo_loss_weights has {len(self.dpo_loss_weights)} values for {len(self.dpo_loss_type)} "
               "--dpo_loss_type values")
        _check(0.0 <= self.label_smoothing < 0.5, "--label_smoothing must be in [0, 0.5)")


@dataclass(frozen=True)
class CpoArgs:
    """CPO and SimPO (TRL's CPOConfig)."""

    simpo_gamma: float = arg(0.5, "simpo: target reward margin gamma.", methods=("simpo",))
    cpo_alpha: Optional[float] = arg(
        None, "cpo/simpo: weight of the NLL term on chosen replies (default: cpo 1.0, simpo 0.0).",
        methods=("cpo", "simpo"),
    )


@dataclass(frozen=True)
class KtoArgs:
    """KTO (TRL's KTOConfig)."""

    desirable_weight: float = arg(1.0, "kto: loss weight of desirable (label true) rows.", methods=("kto",))
    undesirable_weight: float = arg(1.0, "kto: loss weight of undesirable (label false) rows.", methods=("kto",))

    def __post_init__(self):
        _check(self.desirable_weight > 0 and self.undesirable_weight > 0,
               "--desirable_weight and --undesirable_weight must be > 0")


@dataclass(frozen=True)
class RewardModelArgs:
    """Reward-model training (TRL's RewardConfig)."""

    center_rewards_coefficient: Optional[float] = arg(
        None, "rm: weight of a penalty on the mean reward's square, keeping rewards centred at 0.",
        methods=("rm",),
    )


@dataclass(frozen=True)
class RolloutArgs:
    """How the online methods (grpo, ppo) generate replies while training."""

    max_completion_length: int = arg(256, "grpo/ppo: most tokens generated per reply. Alias: --response_length "
                                     "(ms-swift 3.x).", methods=("grpo", "ppo"), aliases=("response_length",))
    temperature: float = arg(1.0, "grpo/ppo: sampling temperature of the replies.", methods=("grpo", "ppo"))
    cliprange: float = arg(0.2, "ppo/grpo: clip range of the policy ratio (grpo: epsilon). Alias: --epsilon.",
                           methods=("grpo", "ppo"), aliases=("epsilon",))

    def __post_init__(self):
        _check(self.max_completion_length > 0, "--max_completion_length must be > 0")
        _check(self.temperature > 0, "--temperature must be > 0 (replies are sampled)")


VLLM_MODES = ("server", "colocate")
SLEEP_LEVELS = (0, 1, 2)
# The flags each --vllm_mode reads (a flag of the other mode given explicitly is an error).
SERVER_FLAGS = ("vllm_server_host", "vllm_server_port", "vllm_server_base_url", "vllm_server_timeout")
COLOCATE_FLAGS = ("vllm_gpu_memory_utilization", "vllm_tensor_parallel_size", "sleep_level")


@dataclass(frozen=True)
class VllmRolloutArgs:
    """Where GRPO's and PPO's rollouts are generated: in the training process with transformers (default), on a
    `swiftkit rollout` server (--use_vllm true --vllm_mode server), or by vLLM inside the training process
    (--vllm_mode colocate, GRPO only). ms-swift's flag names."""

    use_vllm: bool = arg(
        False, "grpo/ppo: generate the rollouts with vLLM instead of transformers in the training process: on a "
        "`swiftkit rollout` server (--vllm_mode server; the server runs vLLM, or transformers with "
        "--infer_backend transformers) or inside the training process (--vllm_mode colocate, grpo only, CUDA GPU "
        "and swiftkit[vllm]).", methods=("grpo", "ppo"),
    )
    vllm_mode: str = arg(
        "colocate", "grpo/ppo with --use_vllm: server (a `swiftkit rollout` server generates; the trainer pushes its "
        "weights to it after each optimizer step) or colocate (vLLM inside the training process; grpo only).",
        methods=("grpo", "ppo"),
    )
    vllm_server_host: str = arg("127.0.0.1", "--vllm_mode server: host of the `swiftkit rollout` server.",
                                methods=("grpo", "ppo"))
    vllm_server_port: int = arg(8000, "--vllm_mode server: port of the `swiftkit rollout` server.",
                                methods=("grpo", "ppo"))
    vllm_server_base_url: Optional[str] = arg(
        None, "--vllm_mode server: the server's address as a URL (http://HOST:PORT); replaces --vllm_server_host "
        "and --vllm_server_port.", methods=("grpo", "ppo"),
    )
    vllm_server_timeout: float = arg(
        240.0, "--vllm_mode server: seconds to wait for the server's /health before training; unreachable by then "
        "is an error naming its address (nothing is written).", methods=("grpo", "ppo"),
    )
    vllm_gpu_memory_utilization: float = arg(
        0.9, "--vllm_mode colocate: fraction of the GPU's memory vLLM may take (a rollout server takes its own: "
        "`swiftkit rollout --vllm_gpu_memory_utilization`).", methods=("grpo",),
    )
    vllm_tensor_parallel_size: int = arg(
        1, "--vllm_mode colocate: GPUs each vLLM instance is split across (a rollout server takes its own: "
        "`swiftkit rollout --vllm_tensor_parallel_size`).", methods=("grpo",),
    )
    sleep_level: int = arg(
        0, "--vllm_mode colocate: 0 keeps vLLM's memory while training steps run; 1 or 2 put vLLM to sleep "
        "between rollouts (TRL's sleep mode frees its weights and cache, level 2, either way).",
        methods=("grpo",),
    )

    def __post_init__(self):
        _one_of(self.vllm_mode, VLLM_MODES, "--vllm_mode")
        _check(0 < self.vllm_server_port < 65536, f"--vllm_server_port must be between 1 and 65535, got "
               f"{self.vllm_server_port}")
        _check(bool(self.vllm_server_host), "--vllm_server_host must not be empty")
        url = self.vllm_server_base_url
        _check(url is None or re.match(r"^https?://[^/\s]+/?$", url) is not None,
               f"--vllm_server_base_url must be http://HOST:PORT (or https://), got {url!r}")
        _check(self.vllm_server_timeout > 0, "--vllm_server_timeout must be > 0 (seconds)")
        _check(0 < self.vllm_gpu_memory_utilization <= 1, "--vllm_gpu_memory_utilization must be in (0, 1]")
        _check(self.vllm_tensor_parallel_size >= 1, "--vllm_tensor_parallel_size must be >= 1")
        _check(self.sleep_level in SLEEP_LEVELS, f"--sleep_level must be 0, 1 or 2, got {self.sleep_level}")

    @property
    def server_url(self) -> str:
        """The rollout server's base URL: --vllm_server_base_url, or http://HOST:PORT."""
        if self.vllm_server_base_url:
            return self.vllm_server_base_url.rstrip("/")
        host = self.vllm_server_host
        return f"http://[{host}]:{self.vllm_server_port}" if ":" in host else f"http://{host}:{self.vllm_server_port}"


@dataclass(frozen=True)
class GrpoArgs:
    """GRPO (TRL's GRPOConfig) and its reward functions."""

    reward_funcs: list[str] = arg(
        [], "grpo: reward functions by name (`swiftkit list rewards`; plugins add more through "
        "swiftkit_register_reward_funcs). Built in: accuracy, format, length.",
        methods=("grpo",),
    )
    reward_weights: list[float] = arg(
        [], "grpo: weight of each reward (--reward_funcs, then --reward_model); default 1 each.",
        methods=("grpo",),
    )
    format_pattern: str = arg(
        r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$",
        "grpo `format` reward: the regular expression a well-formed reply matches (DOTALL).",
        methods=("grpo",),
    )
    num_generations: int = arg(4, "grpo: replies sampled per prompt (the group whose rewards are compared).",
                               methods=("grpo",))
    grpo_loss_type: str = arg(
        "dapo", "grpo: how token losses are averaged (TRL's): grpo (per sequence, length-biased), dapo (over "
        "the batch's tokens), dr_grpo (by a constant), bnpo, cispo, sapo, luspo, vespo.",
        methods=("grpo",),
    )
    scale_rewards: str = arg(
        "group",
        "grpo: divide advantages by the reward std of each group (group), of the batch (batch), or not (none).",
        methods=("grpo",),
    )
    num_iterations: int = arg(1, "grpo: optimisation passes over each batch of generations (mu).", methods=("grpo",))

    def __post_init__(self):
        _check(self.num_generations >= 2, "--num_generations must be >= 2 (GRPO compares replies within a group)")
        _check(self.num_iterations >= 1, "--num_iterations must be >= 1")
        _one_of(self.grpo_loss_type, GRPO_LOSS_TYPES, "--grpo_loss_type")
        _check(self.scale_rewards in ("group", "batch", "none"), "--scale_rewards must be group, batch or none")
        try:
            re.compile(self.format_pattern)
        except re.error as exc:
            raise ConfigError(f"--format_pattern is not a valid regular expression: {exc}") from exc


@dataclass(frozen=True)
class PpoArgs:
    """PPO (swiftkit's own trainer): value model, update passes, clipping, GAE."""

    value_model: Optional[str] = arg(
        None, "ppo: model the value head starts from (default: --reward_model).",
        methods=("ppo",),
    )
    num_ppo_epochs: int = arg(4, "ppo: optimisation passes over each batch of rollouts.", methods=("ppo",))
    cliprange_value: float = arg(0.2, "ppo: clip range of the value update.", methods=("ppo",))
    vf_coef: float = arg(0.1, "ppo: weight of the value loss.", methods=("ppo",))
    gamma: float = arg(1.0, "ppo: discount factor.", methods=("ppo",))
    lam: float = arg(0.95, "ppo: GAE lambda.", methods=("ppo",))
    missing_eos_penalty: Optional[float] = arg(
        None, "ppo: subtracted from the score of a reply that ends without an end-of-turn token.",
        methods=("ppo",),
    )

    def __post_init__(self):
        _check(self.num_ppo_epochs >= 1, "--num_ppo_epochs must be >= 1")
