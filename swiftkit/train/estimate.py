"""What a training run holds in memory and how many steps it takes, worked out without its weights.

Used by ``--dry_run`` (:mod:`swiftkit.recipes.dryrun`). Everything here is arithmetic over a model
built on the meta device (shapes and dtypes, no data) and over the encoded rows' lengths:

- parameters per module group, trainable and total (:func:`count_parameters`);
- bytes of the weights (bitsandbytes' 4/8-bit storage included: :func:`bnb_weight_bytes`), the
  gradients and the optimizer states per ``--optim`` (:func:`optimizer_state_bytes`);
- optimizer steps per epoch as transformers' Trainer counts them (:func:`steps_per_epoch`).

The activation peak is traced by :mod:`swiftkit.train.estimate_trace`; :mod:`swiftkit.train.estimate_memory`
adds the parts up for the device the run trains on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

GROUPS = ("embeddings", "attention", "mlp", "norms", "head", "adapters", "other")
_PEFT_PREFIX = "base_model.model."
_PEFT_WRAPPERS = (".base_layer.", ".original_module.")
_HEAD_NAMES = ("lm_head", "score", "v_head", "classifier", "output", "embed_out")
_MLP_PARTS = ("mlp", "ffn", "feed_forward", "experts", "moe", "shared_expert", "block_sparse_moe")
_MLP_LEAVES = ("fc1", "fc2", "c_fc", "w1", "w2", "w3")


def canonical_name(name: str) -> str:
    """A parameter's name as the untuned model has it (peft's prefix and wrapper modules removed)."""
    if name.startswith(_PEFT_PREFIX):
        name = name[len(_PEFT_PREFIX):]
    for wrapper in _PEFT_WRAPPERS:
        name = name.replace(wrapper, ".")
    return name


def _module_path(path: str) -> str:
    """A module's path as the untuned model has it."""
    return canonical_name(path + ".")[:-1] if path else ""


def _group(path: str, module, is_head: bool) -> str:
    import torch  # defers torch

    parts = [p.lower() for p in path.split(".") if p]
    leaf = parts[-1] if parts else ""
    if is_head or leaf in _HEAD_NAMES:
        return "head"
    if isinstance(module, torch.nn.Embedding) or "embed" in leaf or leaf in ("wte", "wpe"):
        return "embeddings"
    if "norm" in type(module).__name__.lower() or "norm" in leaf or leaf.startswith("ln"):
        return "norms"
    if any("attn" in p or "attention" in p for p in parts):
        return "attention"
    if any(p in _MLP_PARTS or "mlp" in p for p in parts) or leaf in _MLP_LEAVES:
        return "mlp"
    return "other"


@dataclass
class ParamInfo:
    """One parameter tensor of the tuned model (tied tensors appear once)."""

    name: str  # canonical name
    group: str
    numel: int
    shape: tuple
    itemsize: int  # bytes per element of its dtype
    trainable: bool
    new: bool  # added by the tuner (not in the untuned model)
    module_type: str = ""


@dataclass
class ParameterCount:
    """Trainable and total parameters per group, and every parameter tensor for the memory sums."""

    groups: dict = field(default_factory=lambda: {g: {"trainable": 0, "total": 0} for g in GROUPS})
    params: list = field(default_factory=list)
    tied: list = field(default_factory=list)  # "a = b" names of tensors shared between modules

    @property
    def trainable(self) -> int:
        return sum(g["trainable"] for g in self.groups.values())

    @property
    def total(self) -> int:
        return sum(g["total"] for g in self.groups.values())

    def as_dict(self) -> dict:
        groups = {name: dict(counts) for name, counts in self.groups.items() if counts["total"]}
        return {"trainable": self.trainable, "total": self.total,
                "trainable_percent": round(100 * self.trainable / self.total, 4) if self.total else 0.0,
                "groups": groups, "tied": list(self.tied)}


def base_parameter_names(model) -> set[str]:
    """Canonical names of the parameters of ``model`` before a tuner changes it."""
    return {canonical_name(n) for n, _ in model.named_parameters(remove_duplicate=False)}


def count_parameters(model, base_names: set[str]) -> ParameterCount:
    """Parameters of ``model`` (tuned) by group; a parameter whose name is not in ``base_names`` was
    added by the tuner and counts as ``adapters``. A tensor tied to another counts once, in the group
    of the module that holds it first (tied input and output embeddings: ``embeddings``)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    seen: dict[int, str] = {}
    out = ParameterCount()
    for path, module in model.named_modules():
        for local, param in module.named_parameters(recurse=False):
            name = canonical_name(f"{path}.{local}" if path else local)
            if id(param) in seen:
                if seen[id(param)] != name:
                    out.tied.append(f"{name} = {seen[id(param)]}")
                continue
            seen[id(param)] = name
            new = name not in base_names
            group = "adapters" if new else _group(_module_path(path), module, module is head)
            info = ParamInfo(name, group, param.numel(), tuple(param.shape), param.element_size(),
                             bool(param.requires_grad), new, type(module).__name__)
            out.params.append(info)
            out.groups[group]["total"] += info.numel
            if info.trainable:
                out.groups[group]["trainable"] += info.numel
    return out


# -- bytes --------------------------------------------------------------------------------------

BNB_4BIT_BLOCK = 64  # values per absmax constant of bitsandbytes' 4-bit weights
BNB_NESTED_BLOCK = 256  # absmax constants per nested constant with double quantization
BNB_OPTIM_BLOCK = 256  # values per absmax constant of bitsandbytes' 8-bit optimizer states
BNB_OPTIM_MIN_SIZE = 4096  # smaller tensors keep 32-bit states (bitsandbytes' min_8bit_size)


def bnb_weight_bytes(numel: int, out_features: int, bits: int, double_quant: bool) -> int:
    """Bytes of one linear weight as bitsandbytes stores it.

    4 bits: two values per byte, one absmax per 64 values (fp32; with double quantization a byte,
    plus an fp32 constant per 256 of them and a 256-entry code book), a 16-entry code book.
    8 bits (LLM.int8): one byte per value plus an fp32 scale per output row."""
    if bits == 8:
        return numel + 4 * out_features
    blocks = math.ceil(numel / BNB_4BIT_BLOCK)
    data = math.ceil(numel / 2)
    if double_quant:
        constants = blocks + 4 * math.ceil(blocks / BNB_NESTED_BLOCK) + 4 * 256
    else:
        constants = 4 * blocks
    return data + constants + 4 * 16


def quantized_names(count: ParameterCount) -> set[str]:
    """The weights transformers quantizes with bitsandbytes: every linear layer's weight of the
    untuned model except the head (embeddings, norms, biases and the head stay in --torch_dtype)."""
    return {p.name for p in count.params
            if not p.new and p.module_type == "Linear" and p.name.endswith(".weight") and p.group != "head"}


def weight_bytes(count: ParameterCount, quant: dict | None = None) -> dict:
    """``{"base", "adapters", "quantized_params", "full_precision_params"}``: bytes of the base model's
    weights (quantized where bitsandbytes would) and of the tensors the tuner added."""
    qnames = quantized_names(count) if quant else set()
    base = new = quantized = 0
    for p in count.params:
        if p.new:
            new += p.numel * p.itemsize
        elif p.name in qnames:
            quantized += p.numel
            base += bnb_weight_bytes(p.numel, p.shape[0], quant["quant_bits"],
                                     quant.get("bnb_4bit_use_double_quant", True))
        else:  # peft's k-bit preparation keeps the unquantized weights in float32
            base += p.numel * (max(p.itemsize, 4) if quant else p.itemsize)
    return {"base": base, "adapters": new, "quantized_params": quantized,
            "full_precision_params": sum(p.numel for p in count.params if not p.new) - quantized}


def gradient_bytes(count: ParameterCount) -> int:
    """One gradient per trainable parameter, in the parameter's dtype."""
    return sum(p.numel * p.itemsize for p in count.params if p.trainable)


def _option(optim_args: str | None, key: str, default: float) -> float:
    for pair in (optim_args or "").split(","):
        name, _, value = pair.partition("=")
        if name.strip() == key:
            try:
                return float(value)
            except ValueError:
                return default
    return default


def _factored(shape: tuple) -> int:
    """Elements of Adafactor's second moment: a row and a column vector for a matrix."""
    if len(shape) >= 2:
        return math.prod(shape[:-1]) + math.prod(shape[:-2] + shape[-1:])
    return math.prod(shape)


def _eight_bit(numel: int, states: int) -> int:
    if numel < BNB_OPTIM_MIN_SIZE:
        return states * 4 * numel
    return states * (numel + 4 * math.ceil(numel / BNB_OPTIM_BLOCK))


def _galore(p, rank: int) -> int:
    """GaLore on a matrix: the projection (short side x rank) and AdamW's two states of the projected
    gradient (rank x long side), fp32."""
    if len(p.shape) != 2 or p.group not in ("attention", "mlp"):
        return 2 * p.numel * p.itemsize
    short, long = sorted(p.shape)
    r = min(rank, short)
    return 4 * (short * r + 2 * r * long)


_STATEFUL = ("adam", "stable_adamw", "schedule_free_adamw", "ademamix", "lion", "grokadamw")


def optimizer_state_bytes(optim: str, trainable: list, *, optim_args: str | None = None,
                          optimizer: str | None = None, galore_rank: int = 128) -> tuple[int, str, bool]:
    """``(bytes, how they are counted, assumed)`` of the optimizer's state for the ``trainable``
    :class:`ParamInfo` list. ``optimizer`` is --optimizer (a built-in or plugin optimizer), else
    ``optim`` (transformers' name) decides. ``assumed`` is True when the name is unknown here and
    AdamW's two states per parameter were counted instead."""
    name = (optimizer or optim).lower()
    size = sum(p.numel * p.itemsize for p in trainable)
    fp32 = sum(4 * p.numel for p in trainable)
    if (optimizer and name == "galore") or name.startswith(("galore_", "apollo_")):
        return sum(_galore(p, galore_rank) for p in trainable), f"GaLore: rank-{galore_rank} states", False
    if optimizer and name == "lorap":
        return 2 * size, "AdamW (LoRA+ groups): 2 states per trainable parameter", False
    if optimizer:
        return 2 * size, f"--optimizer {optimizer}: assumed AdamW's 2 states per trainable parameter", True
    states = 3 if "ademamix" in name else 1 if name.startswith(("lion", "paged_lion", "rmsprop")) else 2
    if "8bit" in name:
        total = sum(_eight_bit(p.numel, states) for p in trainable)
        return total, f"{optim}: {states} 8-bit state(s) per parameter (32-bit under 4096 values)", False
    if name == "adamw_torch_4bit":
        return sum(2 * (p.numel // 2 + 4 * math.ceil(p.numel / 128)) for p in trainable), \
            f"{optim}: 2 4-bit states", False
    if "32bit" in name or name.startswith(("paged_", "rmsprop_bnb")):
        return states * fp32, f"{optim}: {states} fp32 state(s) per parameter", False
    if name in ("sgd",):
        momentum = _option(optim_args, "momentum", 0.0)
        return (size if momentum else 0), f"SGD: {'a momentum buffer' if momentum else 'no state'}", False
    if name == "adagrad":
        return size, "Adagrad: 1 state per parameter", False
    if name == "rmsprop":
        n = 1 + (_option(optim_args, "momentum", 0.0) > 0) + (_option(optim_args, "centered", 0.0) > 0)
        return n * size, f"RMSprop: {n} state(s) per parameter", False
    if name in ("adafactor", "adalomo"):
        return sum(4 * _factored(p.shape) for p in trainable), f"{optim}: factored second moment (fp32)", False
    if name == "lomo":
        return 0, "LOMO: no optimizer state", False
    if name.startswith("schedule_free_sgd"):
        return size, f"{optim}: 1 state per parameter", False
    if name.startswith(_STATEFUL):
        return states * size, f"{optim}: {states} state(s) per trainable parameter, in its dtype", False
    return 2 * size, f"--optim {optim}: assumed AdamW's 2 states per trainable parameter", True


def optimizer_step_workspace(optim: str, optimizer: str | None, trainable: list) -> int:
    """Temporary memory of one optimizer step: torch's multi-tensor Adam builds one full-size
    intermediate (the denominator) over all parameters at once."""
    name = (optimizer or optim).lower()
    if "8bit" in name or "4bit" in name or name in ("sgd", "lomo", "adafactor", "adalomo"):
        return 0
    return sum(p.numel * p.itemsize for p in trainable)


# -- steps ---------------------------------------------------------------------------------------


def steps_per_epoch(num_rows: int, batch_size: int, accumulation: int, drop_last: bool = False) -> int:
    """Optimizer steps in one epoch of ``num_rows`` rows, as transformers' Trainer counts them: the
    batches of an epoch, grouped by ``accumulation`` (a last partial group is a step too)."""
    batches = num_rows // batch_size if drop_last else math.ceil(num_rows / batch_size)
    return max(batches // accumulation + int(batches % accumulation > 0), 1)


def total_steps(per_epoch: int, max_steps: int, num_train_epochs: float) -> int:
    """--max_steps when set, else ``ceil(epochs x steps per epoch)`` (transformers' rule)."""
    return max_steps if max_steps > 0 else math.ceil(num_train_epochs * per_epoch)


def length_histogram(lengths) -> list[dict]:
    """Rows per token-length bucket (``{"upto", "rows"}``): the buckets double from 16 and the last
    one ends at the longest row."""
    lengths = [int(n) for n in lengths]
    if not lengths:
        return []
    top = max(lengths)
    edges, edge = [], 16
    while edge < top:
        edges.append(edge)
        edge *= 2
    edges.append(top)
    counts = [0] * len(edges)
    for n in lengths:
        counts[next(i for i, e in enumerate(edges) if n <= e)] += 1
    return [{"upto": e, "rows": c} for e, c in zip(edges, counts)]
