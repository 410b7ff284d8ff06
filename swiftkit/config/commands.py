"""One config per command, composed of field groups; flat dicts (flags, YAML, args.json) in and out.

A command config is frozen once built. ``given`` records which flags the user set (on the command
line, in YAML or as API keyword arguments), so a value the user chose, even one equal to its
default, beats what a checkpoint's ``args.json`` says. Rules that involve several groups live here,
once, in the configs' ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from swiftkit.config.evaluation import BenchmarkEvalArgs, EvalArgs
from swiftkit.config.export import ExportArgs, HubArgs, QuantizeArgs
from swiftkit.config.flagnames import canonical_keys, refusal
from swiftkit.config.groups import (
    EVAL_DRIVEN_SCHEDULERS,
    TRANSFORMERS_SCHEDULERS,
    DataArgs,
    ModelArgs,
    PluginArgs,
    TemplateArgs,
    TrainingArgs,
)
from swiftkit.config.inference import (
    AdapterArgs,
    DataToolArgs,
    DeployArgs,
    GenerationArgs,
    RolloutServerArgs,
    VllmArgs,
)
from swiftkit.config.rlhf import (
    COLOCATE_FLAGS,
    DPO_LOSS_TYPES,
    GRPO_LOSS_TYPES,
    REFERENCE_FREE,
    SERVER_FLAGS,
    CpoArgs,
    DpoArgs,
    GrpoArgs,
    KtoArgs,
    PpoArgs,
    RewardModelArgs,
    RlhfArgs,
    RolloutArgs,
    VllmRolloutArgs,
)
from swiftkit.config.training_parts import CallbackArgs, OptimArgs
from swiftkit.config.tuners import LORA_LIKE, QuantArgs, TunerArgs
from swiftkit.config.values import coerce
from swiftkit.core.errors import ConfigError
from swiftkit.core.registry import closest

# The data flags --load_data_args takes from a run's args.json when they are not given: the ones that decide
# which rows are read and how (so a split held out in training is held out again, row for row).
DATA_ARGS = ("dataset", "val_dataset", "split_dataset_ratio", "data_seed", "model_name", "model_author", "columns",
             "skip_bad_rows", "max_row_bytes", "streaming")
# Built-in tuner names (the tuner-specific flag check leaves plugins' tuners alone).
KNOWN_TUNERS = (*LORA_LIKE, "full", "freeze", "adalora", "vera", "boft", "ia3", "loha", "lokr", "llamapro", "reft")


@functools.cache
def _flat_fields(cls) -> dict[str, tuple[str, dataclasses.Field, Any]]:
    out: dict[str, tuple[str, dataclasses.Field, Any]] = {}
    for gname, gcls in cls.groups():
        hints = typing.get_type_hints(gcls)
        for f in dataclasses.fields(gcls):
            if f.name in out:
                raise TypeError(f"`swiftkit {cls.command}`: --{f.name} is defined by two groups, "
                                f"{out[f.name][0]} and {gname}; flag names must be unique")
            out[f.name] = (gname, f, hints[f.name])
    return out


@dataclass(frozen=True)
class CommandConfig:
    """Base of command configs: groups are fields; flat keys map onto the group that owns them."""

    command: ClassVar[str] = ""
    description: ClassVar[str] = ""

    plugin_options: dict = field(default_factory=dict)  # values of plugin-declared fields, by flag name
    given: frozenset = field(default=frozenset(), compare=False, repr=False)  # the flags the user set

    @classmethod
    def groups(cls) -> list[tuple[str, type]]:
        hints = typing.get_type_hints(cls)
        return [(f.name, hints[f.name]) for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])]

    @classmethod
    def flat_fields(cls) -> dict[str, tuple[str, dataclasses.Field, Any]]:
        """flag name -> (group attribute, dataclass field, resolved type); a name in two groups is a bug.
        Built once per class (resolving the type hints is slow); each call returns a new dict."""
        return dict(_flat_fields(cls))

    @classmethod
    def from_flat(cls, values: dict[str, Any], source: str = "argument", plugin_fields: dict | None = None):
        """Build from a flat mapping; unknown keys are an error naming the closest valid key, a value
        of the wrong type one naming the flag, the value and the type (:func:`coerce`). Every key
        given is recorded in ``given``.

        ``plugin_fields`` (name -> PluginField) are the fields loaded plugins add; their values go
        to ``config.plugin_options``.
        """
        fields = cls.flat_fields()
        plugin_fields = plugin_fields or {}
        values = canonical_keys(cls, values, "flag" if source == "flag" else source, extra_names=plugin_fields)
        per_group: dict[str, dict] = {g: {} for g, _ in cls.groups()}
        options = {name: f.default for name, f in plugin_fields.items()}
        for key, value in values.items():
            if key in plugin_fields:
                options[key] = plugin_fields[key].coerce(value, source)
                continue
            if key not in fields:
                refused = refusal(cls, key)
                if refused is not None:
                    raise refused
                raise ConfigError(
                    f"unknown {source} {key!r} for `swiftkit {cls.command}`"
                    f"{closest(key, [*fields, *plugin_fields])}"
                )
            gname, f, tp = fields[key]
            flag = f"--{key}" if source == "flag" else f"{source} {key!r}"
            per_group[gname][key] = coerce(flag, value, tp, json_object=f.metadata.get("json_object", False))
        kwargs = {}
        for gname, gcls in cls.groups():
            try:
                kwargs[gname] = gcls(**per_group[gname])
            except TypeError as exc:  # a value of the wrong kind that the group's checks tripped over
                raise ConfigError(f"`swiftkit {cls.command}`: {exc}") from exc
        return cls(**kwargs, plugin_options=options, given=frozenset(values))

    def to_flat(self) -> dict[str, Any]:
        out = {}
        for gname, _ in self.groups():
            out.update(dataclasses.asdict(getattr(self, gname)))
        out.update(self.plugin_options)
        return out

    def is_given(self, flag: str) -> bool:
        """Whether the user set ``flag`` (command line, YAML or API), whatever its value."""
        return flag in self.given

    def with_data_args(self, train_args: dict) -> tuple[CommandConfig, dict]:
        """``(config, inherited)``: a copy whose data flags the user did not give come from a run's
        ``train_args`` (its args.json; --load_data_args), validated again, and what was taken."""
        inherited = {k: train_args[k] for k in DATA_ARGS if k in train_args and not self.is_given(k)}
        if not inherited:
            return self, {}
        fields = self.flat_fields()
        values = {k: coerce(f"--{k} (from args.json)", v, fields[k][2], json_object=fields[k][1].metadata.get(
            "json_object", False)) for k, v in inherited.items()}
        return dataclasses.replace(self, data=dataclasses.replace(self.data, **values)), inherited


@dataclass(frozen=True)
class SftConfig(CommandConfig):
    command: ClassVar[str] = "sft"
    description: ClassVar[str] = "Supervised fine-tuning on conversations (LoRA, full or freeze)."

    model: ModelArgs = field(default_factory=ModelArgs)
    template: TemplateArgs = field(default_factory=TemplateArgs)
    data: DataArgs = field(default_factory=DataArgs)
    tuner: TunerArgs = field(default_factory=TunerArgs)
    quant: QuantArgs = field(default_factory=QuantArgs)
    training: TrainingArgs = field(default_factory=TrainingArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    callback: CallbackArgs = field(default_factory=CallbackArgs)
    bench: BenchmarkEvalArgs = field(default_factory=BenchmarkEvalArgs)
    plugin: PluginArgs = field(default_factory=PluginArgs)

    def __post_init__(self):
        self._check_tuner_flags()
        d, tr = self.data, self.training
        if not d.dataset and not self.data_from_checkpoint:
            raise ConfigError(f"`swiftkit {self.command}` needs --dataset (or --load_data_args true with "
                              "--resume_from_checkpoint, to take the resumed run's)")
        if not self.model.model and not self.training.resume_from_checkpoint and not self._starts_from_adapters():
            raise ConfigError(f"`swiftkit {self.command}` needs --model")
        if d.load_data_args and not tr.resume_from_checkpoint:
            raise ConfigError(f"--load_data_args takes the data flags of the run --resume_from_checkpoint continues; "
                              f"pass --resume_from_checkpoint, or drop --load_data_args (`swiftkit {self.command}` "
                              "needs --dataset)")
        if self.data_from_checkpoint:
            return  # the data flags come from the checkpoint's args.json; checked when they are filled in
        if d.streaming:
            if tr.max_steps <= 0:
                raise ConfigError("--streaming needs --max_steps: a stream's length is not known in advance")
            if tr.packing:
                raise ConfigError("--packing needs every row encoded up front; it does not work with --streaming")
            if d.split_dataset_ratio > 0:
                raise ConfigError("--split_dataset_ratio needs the whole dataset; with --streaming pass --val_dataset")
        if tr.packing and d.lazy_tokenize:
            raise ConfigError("--packing needs every row encoded up front; drop --lazy_tokenize")
        if tr.lr_scheduler_type in EVAL_DRIVEN_SCHEDULERS and not (d.val_dataset or d.split_dataset_ratio > 0):
            raise ConfigError(f"--lr_scheduler_type {tr.lr_scheduler_type} adjusts the learning rate on evaluation "
                              "loss: pass --val_dataset or --split_dataset_ratio")
        self._check_strategies(bool(d.val_dataset or d.split_dataset_ratio > 0))
        self._check_benchmarks(bool(d.val_dataset or d.split_dataset_ratio > 0))

    def _check_benchmarks(self, has_eval_data: bool) -> None:
        """--eval_benchmarks run at the evaluations, which need evaluation data and a generating model."""
        if not self.bench.eval_benchmarks:
            return
        no_eval = self._no_evaluation()
        if no_eval:
            raise ConfigError(f"{no_eval}: drop --eval_benchmarks (score the trained model with `swiftkit eval`)")
        if not has_eval_data:
            raise ConfigError("--eval_benchmarks run at each evaluation, beside the eval loss: pass --val_dataset or "
                              "--split_dataset_ratio")
        if self.training.eval_strategy == "no":
            raise ConfigError("--eval_benchmarks run at evaluations; --eval_strategy no runs none")

    @property
    def data_from_checkpoint(self) -> bool:
        """Whether the data flags are still to be read from the resumed run's args.json (--load_data_args
        with --resume_from_checkpoint and no --dataset)."""
        return bool(self.data.load_data_args and self.training.resume_from_checkpoint and not self.data.dataset)

    def _check_strategies(self, has_eval_data: bool) -> None:
        """--eval_strategy and --save_strategy fit each other and the data: evaluating needs evaluation data,
        saving the best checkpoint needs evaluations, --eval_steps needs --eval_strategy steps."""
        tr = self.training
        evaluates = (tr.eval_strategy in ("steps", "epoch") and self.is_given("eval_strategy")) or \
            tr.save_strategy == "best"
        no_eval = self._no_evaluation()
        if evaluates and no_eval:
            raise ConfigError(f"{no_eval}: drop --eval_strategy {tr.eval_strategy}" if tr.save_strategy != "best"
                              else f"{no_eval}: --save_strategy best has no evaluation to compare")
        if tr.eval_strategy in ("steps", "epoch") and self.is_given("eval_strategy") and not has_eval_data:
            raise ConfigError(f"--eval_strategy {tr.eval_strategy} evaluates on validation data: pass --val_dataset "
                              "or --split_dataset_ratio (or --eval_strategy no)")
        if tr.save_strategy == "best":
            if not has_eval_data:
                raise ConfigError("--save_strategy best saves when the evaluation metric improves: pass --val_dataset "
                                  "or --split_dataset_ratio")
            if tr.eval_strategy == "no":
                raise ConfigError("--save_strategy best saves when an evaluation improves the metric; --eval_strategy "
                                  "no runs none: use --eval_strategy steps or epoch")
        if self.is_given("eval_steps") and tr.eval_strategy in ("epoch", "no"):
            raise ConfigError(f"--eval_steps applies to --eval_strategy steps, not {tr.eval_strategy}")

    def _no_evaluation(self) -> str | None:
        """Why this config cannot evaluate while training (None: it can)."""
        return None

    def _starts_from_adapters(self) -> bool:
        """Whether the base model comes from trained adapters' args.json (rlhf --adapters)."""
        return False

    def _check_tuner_flags(self) -> None:
        """Tuner-specific flags given a value of their own must apply to --train_type; quantization needs an
        adapter tuner (a 4/8-bit weight cannot take a gradient)."""
        kind = self.tuner.train_type
        for f in dataclasses.fields(TunerArgs):
            tuners = f.metadata.get("tuners")
            changed = getattr(self.tuner, f.name) != (f.default_factory() if callable(f.default_factory) else f.default)
            if tuners and kind not in tuners and kind in KNOWN_TUNERS and self.is_given(f.name) and changed:
                raise ConfigError(f"--{f.name} applies to --train_type {'/'.join(tuners)}, not {kind}")
        if self.quant.quant_method and kind in ("full", "freeze", "llamapro"):
            raise ConfigError(f"--quant_method {self.quant.quant_method}: a quantized base cannot train with "
                              f"--train_type {kind}; use --train_type lora (QLoRA) or another adapter tuner")

    @property
    def effective_optimizer(self):
        """The optimizer chosen by name: --optimizer, or lorap when --lorap_lr_ratio is set."""
        if self.training.optimizer:
            return self.training.optimizer
        return "lorap" if self.optim.lorap_lr_ratio is not None else None


@dataclass(frozen=True)
class PtConfig(SftConfig):
    """Continued pretraining: raw text (or every token of a conversation) gets loss."""

    command: ClassVar[str] = "pt"
    description: ClassVar[str] = "Continued pretraining on raw text; every token gets loss."


@dataclass(frozen=True)
class RlhfConfig(SftConfig):
    """Alignment after (or instead of) SFT: preference, labelled or online (generated) training.

    Method-specific flags carry the methods they apply to (``methods`` in the field's metadata
    of :mod:`swiftkit.config.rlhf`, checked here): giving one to another method is an error.
    """

    command: ClassVar[str] = "rlhf"
    description: ClassVar[str] = (
        "Alignment training through TRL: dpo, orpo, simpo, cpo, kto, rm (reward model), ppo, grpo."
    )

    rlhf: RlhfArgs = field(default_factory=RlhfArgs)
    dpo: DpoArgs = field(default_factory=DpoArgs)
    cpo: CpoArgs = field(default_factory=CpoArgs)
    kto: KtoArgs = field(default_factory=KtoArgs)
    rm: RewardModelArgs = field(default_factory=RewardModelArgs)
    rollout: RolloutArgs = field(default_factory=RolloutArgs)
    grpo: GrpoArgs = field(default_factory=GrpoArgs)
    vllm_rollout: VllmRolloutArgs = field(default_factory=VllmRolloutArgs)
    ppo: PpoArgs = field(default_factory=PpoArgs)

    def __post_init__(self):
        super().__post_init__()
        r, kind, tr = self.rlhf, self.rlhf.rlhf_type, self.training
        if self.data.streaming:
            raise ConfigError("`swiftkit rlhf` reads the whole dataset up front; drop --streaming")
        if tr.packing:
            raise ConfigError("`swiftkit rlhf` keeps each pair (or prompt) in its own row; drop --packing")
        if tr.trainer != "default":
            raise ConfigError("--trainer chooses the sft/pt trainer; `swiftkit rlhf` uses the trainer of --rlhf_type")
        if tr.metric:
            raise ConfigError("--metric applies to sft/pt; each --rlhf_type logs its own metrics")
        self._check_loss_type(kind)
        if tr.plugin_schedule:
            raise ConfigError(f"--lr_scheduler_type {tr.lr_scheduler_type!r}: `swiftkit rlhf` trainers take "
                              f"transformers' schedules ({', '.join(TRANSFORMERS_SCHEDULERS)}); plugin schedules "
                              "apply to sft/pt")
        if kind == "ppo" and (self.data.val_dataset or self.data.split_dataset_ratio > 0):
            raise ConfigError("--rlhf_type ppo does not evaluate: drop --val_dataset/--split_dataset_ratio "
                              "(score a trained policy with `swiftkit eval`)")
        if kind == "ppo" and not r.reward_model:
            raise ConfigError("--rlhf_type ppo needs --reward_model (e.g. the run of `swiftkit rlhf --rlhf_type rm`)")
        if kind == "grpo":
            g = self.grpo
            if not g.reward_funcs and not r.reward_model:
                raise ConfigError("--rlhf_type grpo needs --reward_funcs (`swiftkit list rewards`) and/or "
                                  "--reward_model")
            n_rewards = len(g.reward_funcs) + (1 if r.reward_model else 0)
            if g.reward_weights and len(g.reward_weights) != n_rewards:
                raise ConfigError(f"--reward_weights has {len(g.reward_weights)} values for {n_rewards} rewards "
                                  "(--reward_funcs, then --reward_model)")
            rows = tr.per_device_train_batch_size * tr.gradient_accumulation_steps
            if rows % g.num_generations:
                raise ConfigError(
                    f"grpo samples --num_generations {g.num_generations} replies per prompt, so "
                    f"--per_device_train_batch_size x --gradient_accumulation_steps ({rows}) must be a multiple of it"
                )
        elif kind == "kto" and tr.per_device_train_batch_size < 2:
            raise ConfigError("--rlhf_type kto estimates its KL term from the other replies of a batch: "
                              "--per_device_train_batch_size must be >= 2")
        if kind != "grpo" and (self.grpo.reward_weights or self.grpo.reward_funcs):
            raise ConfigError(f"--reward_funcs/--reward_weights are for --rlhf_type grpo, not {kind}")
        if r.ref_model and kind in REFERENCE_FREE:
            raise ConfigError(f"--rlhf_type {kind} uses no reference model; drop --ref_model")
        if r.adapters:
            if len(r.adapters) > 1:
                raise ConfigError("--adapters takes one trained LoRA checkpoint (or run) to continue from")
            if kind == "rm":
                raise ConfigError("--rlhf_type rm trains a reward head on the base model; --adapters (a causal-LM "
                                  "adapter) cannot start it")
            if self.tuner.train_type not in LORA_LIKE:  # qlora: the same adapter on a quantized base
                raise ConfigError(f"--adapters continues training a LoRA adapter; --train_type {self.tuner.train_type} "
                                  "does not apply (merge it with `swiftkit export` and pass the folder as --model)")
        self._check_vllm_rollouts(kind)
        self._check_method_flags(kind)

    def _check_vllm_rollouts(self, kind: str) -> None:
        """--use_vllm is GRPO's and PPO's (a server only); the server and colocate flags need it and their own
        --vllm_mode."""
        v = self.vllm_rollout
        if kind == "ppo" and v.use_vllm and v.vllm_mode != "server":
            raise ConfigError("--vllm_mode colocate is TRL's colocated vLLM, which GRPO alone uses: --rlhf_type ppo "
                              "generates on a `swiftkit rollout` server (--use_vllm true --vllm_mode server)")
        if kind not in ("grpo", "ppo"):
            return  # the other methods' own check names any of these flags
        given = [f.name for f in dataclasses.fields(VllmRolloutArgs) if f.name != "use_vllm" and self.is_given(f.name)]
        if given and not v.use_vllm:
            raise ConfigError(f"--{given[0]} applies to vLLM rollouts: add --use_vllm true (and --vllm_mode server "
                              "or colocate)")
        other = COLOCATE_FLAGS if v.vllm_mode == "server" else SERVER_FLAGS
        wrong = [name for name in given if name in other]
        if wrong:
            hint = ("the `swiftkit rollout` server takes its own GPU settings" if v.vllm_mode == "server"
                    else "use --vllm_mode server")
            raise ConfigError(f"--{wrong[0]} does not apply to --vllm_mode {v.vllm_mode} ({hint})")
        moved = self.tuner.init_weights.startswith(("pissa", "olora", "corda", "loftq"))
        if v.use_vllm and v.vllm_mode == "server" and moved and self.tuner.train_type in LORA_LIKE:
            raise ConfigError(f"--init_weights {self.tuner.init_weights} changes the base weights, which the rollout "
                              "server does not have (it takes the adapter alone): use another --init_weights")
        if v.use_vllm and self.tuner.train_type == "llamapro":
            raise ConfigError("--use_vllm with --train_type llamapro: the trained model gains layers the rollout model "
                              "lacks; generate in the training process (drop --use_vllm)")

    def _check_method_flags(self, kind: str) -> None:
        """A flag given explicitly must apply to the chosen method."""
        for _group, gcls in self.groups():
            for f in dataclasses.fields(gcls):
                methods = f.metadata.get("methods")
                if methods and kind not in methods and self.is_given(f.name):
                    raise ConfigError(f"--{f.name} applies to --rlhf_type {'/'.join(methods)}, not {kind}")

    def _check_loss_type(self, kind: str) -> None:
        """--loss_type as ms-swift spells it in rlhf: dpo's loss variant (--dpo_loss_type) or grpo's
        (--grpo_loss_type); the other methods have one loss."""
        loss = self.training.loss_type
        if loss is None:
            return
        own = {"dpo": ("dpo_loss_type", DPO_LOSS_TYPES), "grpo": ("grpo_loss_type", GRPO_LOSS_TYPES)}.get(kind)
        if own is None:
            raise ConfigError(f"--loss_type chooses the loss variant of --rlhf_type dpo or grpo; --rlhf_type {kind} "
                              "has one loss")
        flag, valid = own
        if self.is_given(flag):
            raise ConfigError(f"--loss_type is --{flag} for --rlhf_type {kind}; give only one of them")
        if loss not in valid:
            raise ConfigError(f"unknown --loss_type {loss!r} for --rlhf_type {kind}{closest(loss, valid)}; valid: "
                              f"{', '.join(valid)}")

    @property
    def dpo_losses(self) -> list[str]:
        """The DPO loss variants: --loss_type (ms-swift's name) or --dpo_loss_type."""
        loss = self.training.loss_type
        return [loss] if loss and self.rlhf.rlhf_type == "dpo" else list(self.dpo.dpo_loss_type)

    @property
    def grpo_loss(self) -> str:
        """GRPO's loss aggregation: --loss_type (ms-swift's name) or --grpo_loss_type."""
        loss = self.training.loss_type
        return loss if loss and self.rlhf.rlhf_type == "grpo" else self.grpo.grpo_loss_type

    def _no_evaluation(self) -> str | None:
        return "--rlhf_type ppo does not evaluate" if self.rlhf.rlhf_type == "ppo" else None

    def _check_benchmarks(self, has_eval_data: bool) -> None:
        if self.bench.eval_benchmarks and self.rlhf.rlhf_type == "rm":
            raise ConfigError("--eval_benchmarks score a generating model; --rlhf_type rm trains a reward model "
                              "(its evaluations report reward accuracy)")
        super()._check_benchmarks(has_eval_data)

    def _starts_from_adapters(self) -> bool:
        return bool(self.rlhf.adapters)

    @property
    def is_online(self) -> bool:
        """Whether the method generates replies while training (grpo, ppo)."""
        return self.rlhf.rlhf_type in ("grpo", "ppo")


@dataclass(frozen=True)
class InferConfig(CommandConfig):
    command: ClassVar[str] = "infer"
    description: ClassVar[str] = "Chat with a model or adapters, interactively or over a dataset."

    model: ModelArgs = field(default_factory=ModelArgs)
    adapter: AdapterArgs = field(default_factory=AdapterArgs)
    template: TemplateArgs = field(default_factory=TemplateArgs)
    data: DataArgs = field(default_factory=DataArgs)
    generation: GenerationArgs = field(default_factory=GenerationArgs)
    vllm: VllmArgs = field(default_factory=VllmArgs)
    plugin: PluginArgs = field(default_factory=PluginArgs)

    def __post_init__(self):
        if not self.model.model and not self.adapter.adapters:
            raise ConfigError(f"`swiftkit {self.command}` needs --model or --adapters")
        if self.data.load_data_args and not self.adapter.adapters:
            raise ConfigError("--load_data_args takes the validation data of the --adapters run: pass --adapters RUN")

    @property
    def has_val_data(self) -> bool:
        """Whether rows are given to generate for: --val_dataset, or the share of --dataset that
        --split_dataset_ratio holds out (as training held it out)."""
        d = self.data
        return bool(d.val_dataset or (d.dataset and d.split_dataset_ratio > 0))


@dataclass(frozen=True)
class EvalConfig(InferConfig):
    """Generate with a model or adapters and score the replies with benchmarks chosen by name."""

    command: ClassVar[str] = "eval"
    description: ClassVar[str] = "Score a model or adapters on benchmarks (built in: qa on --val_dataset)."

    eval: EvalArgs = field(default_factory=EvalArgs)

    def __post_init__(self):
        if self.eval.eval_url is None:
            super().__post_init__()
        elif self.model.model or self.adapter.adapters:
            raise ConfigError("--eval_url evaluates a running server; --model/--adapters load a model here: give one "
                              "or the other")
        if self.eval.compare and not self.adapter.adapters and "base" in self.eval.compare:
            raise ConfigError("--compare base compares --adapters with their base model: pass --adapters")
        if "qa" in self.eval.eval_dataset and not self.has_val_data and not self.data.load_data_args:
            raise ConfigError("--eval_dataset qa scores --val_dataset rows: pass --val_dataset FILE_OR_NAME (or "
                              "--load_data_args true to take the --adapters run's validation data)")


@dataclass(frozen=True)
class ExportConfig(CommandConfig):
    command: ClassVar[str] = "export"
    description: ClassVar[str] = (
        "Write a model (--model, and/or trained --adapters merged in) in a format other tools load: merged "
        "safetensors, or quantized with --quant_method bnb|torchao|gptq|awq|gguf. Every artifact is loaded back "
        "and checked against the source (parity.json); --push_to_hub uploads it with a model card."
    )

    model: ModelArgs = field(default_factory=ModelArgs)
    adapter: AdapterArgs = field(default_factory=AdapterArgs)
    template: TemplateArgs = field(default_factory=TemplateArgs)
    data: DataArgs = field(default_factory=DataArgs)
    export: ExportArgs = field(default_factory=ExportArgs)
    quantize: QuantizeArgs = field(default_factory=QuantizeArgs)
    hub: HubArgs = field(default_factory=HubArgs)
    plugin: PluginArgs = field(default_factory=PluginArgs)

    def __post_init__(self):
        if not self.adapter.adapters and not self.model.model:
            raise ConfigError(f"`swiftkit {self.command}` needs --adapters (a trained checkpoint or run directory) "
                              "and/or --model")

    @property
    def format_name(self) -> str:
        """The exporter asked for: the quantizer (--quant_method, or gguf for --gguf_type/--to_ollama), else
        --export_format."""
        return self.quantize.method or self.export.export_format


@dataclass(frozen=True)
class QuantizeConfig(ExportConfig):
    command: ClassVar[str] = "quantize"
    description: ClassVar[str] = (
        "Quantize a model (--model, and/or --adapters merged in) with --quant_method bnb|torchao|gptq|awq|gguf; "
        "the same as `swiftkit export --quant_method ...`. The artifact is loaded back and checked against the "
        "source (parity.json)."
    )

    def __post_init__(self):
        super().__post_init__()
        if self.quantize.method is None:
            raise ConfigError("`swiftkit quantize` needs --quant_method (bnb, torchao, gptq, awq, gguf or a plugin's)")


@dataclass(frozen=True)
class DeployConfig(CommandConfig):
    """Serve a model and its adapters over an OpenAI-compatible HTTP API."""

    command: ClassVar[str] = "deploy"
    description: ClassVar[str] = (
        "Serve a model and LoRA adapters (--adapters NAME=PATH ...) over an OpenAI-compatible API: "
        "/v1/models, /v1/chat/completions, /v1/completions. --max_batch_size caps the rows generated "
        "together; request fields left out take the generation flags' values."
    )

    model: ModelArgs = field(default_factory=ModelArgs)
    adapter: AdapterArgs = field(default_factory=AdapterArgs)
    template: TemplateArgs = field(default_factory=TemplateArgs)
    generation: GenerationArgs = field(default_factory=GenerationArgs)
    deploy: DeployArgs = field(default_factory=DeployArgs)
    vllm: VllmArgs = field(default_factory=VllmArgs)
    plugin: PluginArgs = field(default_factory=PluginArgs)

    def __post_init__(self):
        if not self.model.model and not self.adapter.adapters:
            raise ConfigError("`swiftkit deploy` needs --model or --adapters")
        if self.adapter.merge_lora and len(self.adapter.adapters) > 1:
            raise ConfigError("--merge_lora serves one merged model: pass one --adapters entry, or drop "
                              "--merge_lora to serve each adapter under its own name")


@dataclass(frozen=True)
class RolloutConfig(CommandConfig):
    """Serve a model to GRPO and PPO training runs: token ids in, sampled replies out, weights pushed by the
    trainer."""

    command: ClassVar[str] = "rollout"
    description: ClassVar[str] = (
        "Serve a model (and --adapters) for GRPO and PPO rollouts: `swiftkit rlhf --rlhf_type grpo|ppo --use_vllm "
        "true --vllm_mode server` sends prompt token ids to /generate and pushes its weights to /update_weights "
        "(docs/distributed.md). Runs until SIGINT/SIGTERM."
    )

    model: ModelArgs = field(default_factory=ModelArgs)
    adapter: AdapterArgs = field(default_factory=AdapterArgs)
    template: TemplateArgs = field(default_factory=TemplateArgs)
    server: RolloutServerArgs = field(default_factory=RolloutServerArgs)
    vllm: VllmArgs = field(default_factory=VllmArgs)
    plugin: PluginArgs = field(default_factory=PluginArgs)

    def __post_init__(self):
        if not self.model.model and not self.adapter.adapters:
            raise ConfigError("`swiftkit rollout` needs --model or --adapters")
        if len(self.adapter.adapters) > 1:
            raise ConfigError("`swiftkit rollout` serves one model: pass one --adapters entry (the trainer pushes "
                              "its own adapter to it)")


@dataclass(frozen=True)
class DataLintConfig(CommandConfig):
    """Check --dataset rows (and, with --model, their tokenized length) without loading weights."""

    command: ClassVar[str] = "data lint"
    description: ClassVar[str] = (
        "Report every problem in --dataset: file, row/line, field and what is wrong; exit 1 on errors. "
        "With --model (only its tokenizer is loaded) rows are also encoded with the chat template."
    )

    model: ModelArgs = field(default_factory=ModelArgs)
    template: TemplateArgs = field(default_factory=TemplateArgs)
    data: DataArgs = field(default_factory=DataArgs)
    tool: DataToolArgs = field(default_factory=DataToolArgs)
    plugin: PluginArgs = field(default_factory=PluginArgs)

    def __post_init__(self):
        if not self.data.dataset:
            raise ConfigError(f"`swiftkit {self.command}` needs --dataset")


@dataclass(frozen=True)
class DataPreviewConfig(DataLintConfig):
    command: ClassVar[str] = "data preview"
    description: ClassVar[str] = (
        "Print one encoded --dataset row as the model sees it, with the tokens that get loss marked."
    )

    def __post_init__(self):
        super().__post_init__()
        if not self.model.model:
            raise ConfigError("`swiftkit data preview` needs --model (its tokenizer and chat template)")


CONFIGS: tuple[type[CommandConfig], ...] = (SftConfig, PtConfig, RlhfConfig, InferConfig, EvalConfig, ExportConfig,
                                            QuantizeConfig, DeployConfig, RolloutConfig, DataLintConfig,
                                            DataPreviewConfig)
