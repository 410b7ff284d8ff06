"""GaLore (``--optimizer galore``, or ``--optim galore_adamw|galore_adafactor|galore_adamw_8bit``).

GaLore (Zhao et al., 2024) keeps the optimizer state of a 2-D weight in a low-rank subspace: the
gradient G (m x n) is projected to rank r (r x n or m x r, whichever side is smaller), Adam's moments
live there, and the update is projected back and scaled. The projection is refreshed from an SVD of
the gradient every ``--galore_update_proj_gap`` steps. This trains all weights (``--train_type full``)
with optimizer memory close to LoRA's.

Built on galore-torch's optimizers (the ``galore`` extra) with swiftkit's own param groups, not through
transformers' ``optim=galore_*`` handler, because that handler reads rank/gap/scale from the untyped
``--optim_args`` string with other defaults, needs ``optim_target_modules`` in TrainingArguments, puts
frozen parameters into the optimizer and applies no weight-decay split. Here the targeted weights (the
attention and MLP projections of the decoder layers unless ``--galore_target_modules`` names others)
form GaLore groups; everything else that trains is plain AdamW (or Adafactor) in the same optimizer.

galore-torch keeps a Python ``GaLoreProjector`` object in each targeted weight's state, which a
checkpoint cannot hold (the trainer loads ``optimizer.pt`` with ``weights_only=True``). The optimizer
returned here saves each projector as its tensors and rebuilds it on load, so a run resumes with the
same projection.
"""

from __future__ import annotations

from swiftkit.train.errors import TrainError
from swiftkit.train.optim_names import GALORE_VARIANTS
from swiftkit.train.optim_params import decay_parameter_names, split_by_decay, trainable_parameters

_ORTHO = "galore_ortho"  # state key of a saved projection (a tensor; two for proj_type full)


def matches(module_name: str, target: str) -> bool:
    """Whether ``target`` names ``module_name``: the whole name, its dotted tail, or one of its parts."""
    return module_name == target or module_name.endswith("." + target) or f".{target}." in f".{module_name}."


def galore_targets(model, targets: list[str]) -> list[str]:
    """Names of the trainable 2-D weights GaLore projects: those of modules ``targets`` names, or by
    default every 2-D weight but the input embeddings and the head (in a decoder-only LM: the attention
    and MLP projections of its layers)."""
    skip = set()
    for get in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, get, lambda: None)()
        if module is not None:
            skip.update(id(p) for p in module.parameters())
    chosen = []
    for name, p in trainable_parameters(model):
        if p.ndim != 2 or id(p) in skip or not name.endswith(".weight"):
            continue
        module_name = name[: -len(".weight")]
        if not targets or any(matches(module_name, t) for t in targets):
            chosen.append(name)
    if not chosen:
        what = f"--galore_target_modules {' '.join(targets)} matches" if targets else "this model has"
        raise TrainError(f"--optimizer galore: {what} no trainable 2-D weight to project; name modules such as "
                         "q_proj, v_proj, up_proj (GaLore trains full weights: use --train_type full)")
    return chosen


def galore_param_groups(model, config) -> list[dict]:
    """Plain groups (with and without weight decay) for what GaLore does not target, then GaLore groups."""
    opt, wd = config.optim, config.training.weight_decay
    named = trainable_parameters(model)
    targets = set(galore_targets(model, list(opt.galore_target_modules)))
    decay = decay_parameter_names(model)
    plain = split_by_decay([(n, p) for n, p in named if n not in targets], decay, wd)
    projected = split_by_decay([(n, p) for n, p in named if n in targets], decay, wd, rank=opt.galore_rank,
                               update_proj_gap=opt.galore_update_proj_gap, scale=opt.galore_scale,
                               proj_type=opt.galore_proj_type)
    return plain + projected


def build_galore(model, config):
    """``--optimizer galore``: galore-torch's AdamW (Adafactor / 8-bit AdamW per ``--optim``) over GaLore groups."""
    try:
        import galore_torch  # defers galore_torch
    except ImportError as exc:
        raise TrainError("--optimizer galore needs galore-torch: pip install 'swiftkit[galore]'") from exc

    tr, opt = config.training, config.optim
    variant = GALORE_VARIANTS.get(opt.optim)
    if variant is None:
        raise TrainError(f"--optimizer galore has no form for --optim {opt.optim}; use adamw_torch, adafactor or "
                         "adamw_bnb_8bit")
    groups = galore_param_groups(model, config)
    if variant == "Adafactor":  # a fixed --learning_rate, no relative steps (as transformers' adafactor)
        optimizer = galore_torch.GaLoreAdafactor(groups, lr=tr.learning_rate, scale_parameter=False,
                                                 relative_step=False, warmup_init=False)
    else:
        cls = galore_torch.GaLoreAdamW if variant == "AdamW" else galore_torch.GaLoreAdamW8bit
        kwargs = {"no_deprecation_warning": True} if variant == "AdamW" else {}
        optimizer = cls(groups, lr=tr.learning_rate, betas=(opt.adam_beta1, opt.adam_beta2), eps=opt.adam_epsilon,
                        **kwargs)
    optimizer.register_state_dict_post_hook(_projectors_as_tensors)
    optimizer.register_load_state_dict_post_hook(_projectors_from_tensors)
    return optimizer


def _projectors_as_tensors(optimizer, state_dict: dict) -> dict:
    """state_dict post-hook: each GaLoreProjector replaced by its projection matrix (tensors only)."""
    packed = {}
    for index, state in state_dict["state"].items():
        projector = state.get("projector")
        if projector is None:
            packed[index] = state
            continue
        state = {k: v for k, v in state.items() if k != "projector"}  # the live state is not touched
        ortho = projector.ortho_matrix
        if isinstance(ortho, (list, tuple)):
            state[_ORTHO + "_left"], state[_ORTHO + "_right"] = ortho
        elif ortho is not None:
            state[_ORTHO] = ortho
        packed[index] = state
    state_dict["state"] = packed
    return state_dict


def _projectors_from_tensors(optimizer) -> None:
    """load_state_dict post-hook: rebuild each projector from its saved matrix and its group's settings."""
    from galore_torch.galore_projector import GaLoreProjector  # defers galore_torch

    for group in optimizer.param_groups:
        if "rank" not in group:
            continue
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state or not any(k.startswith(_ORTHO) for k in state):
                continue
            projector = GaLoreProjector(group["rank"], update_proj_gap=group["update_proj_gap"], scale=group["scale"],
                                        proj_type=group["proj_type"])
            if _ORTHO in state:
                projector.ortho_matrix = state.pop(_ORTHO)
            else:
                projector.ortho_matrix = [state.pop(_ORTHO + "_left"), state.pop(_ORTHO + "_right")]
            state["projector"] = projector
