"""LLaMA-Pro block expansion (``--train_type llamapro``): new decoder blocks that start as identities.

The decoder's layers are split into ``--llamapro_num_groups`` equal groups; after each group,
``--llamapro_num_new_blocks / num_groups`` copies of the group's last block are inserted. In each copy
the projections that write into the residual stream (attention output ``o_proj``, MLP output
``down_proj`` and their equivalents) are zeroed, so a new block adds nothing and the model's output is
unchanged at step 0. Only the new blocks train. Every block's ``layer_idx`` and the config
(``num_hidden_layers``, ``layer_types``) describe the expanded model, so the saved folder is a plain
transformers checkpoint of the larger model (full weights, no adapter).
"""

from __future__ import annotations

import copy
import sys

from swiftkit.train.errors import TrainError
from swiftkit.train.tuner_params import check_multimodal_flags

# Leaf names of the linear layers that write a block's output into the residual stream.
RESIDUAL_OUTPUTS = ("o_proj", "out_proj", "down_proj", "c_proj", "dense", "fc2", "w2", "dense_4h_to_h", "wo")
# Per-layer lists in a config that must grow with the layers.
PER_LAYER_CONFIG = ("layer_types",)


def decoder_layers(model):
    """``(parent module, attribute name)`` of the decoder's layer list (``model.model.layers`` for most)."""
    import torch  # defers torch

    best = None
    for module in model.modules():
        for attr, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList) and (best is None or len(child) > len(getattr(*best))):
                best = (module, attr)
    if best is None:
        raise TrainError("--train_type llamapro: the model has no list of decoder layers")
    return best


def _zero_residual_outputs(block) -> int:
    """Zero the weights (and biases) of ``block``'s residual-writing projections; how many were zeroed."""
    count = 0
    for name, module in block.named_modules():
        if name.rsplit(".", 1)[-1] in RESIDUAL_OUTPUTS and hasattr(module, "weight"):
            module.weight.data.zero_()
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()
            count += 1
    return count


def expansion_plan(num_layers: int, num_new: int, num_groups: int | None) -> list[tuple[int, bool]]:
    """The expanded layer order as ``(index of the original layer copied, is new)`` entries."""
    groups = num_groups or num_new
    if num_layers % groups or num_new % groups:
        raise TrainError(f"llamapro: --llamapro_num_groups {groups} must divide the model's {num_layers} layers and "
                         f"--llamapro_num_new_blocks {num_new}")
    size, per_group = num_layers // groups, num_new // groups
    order = []
    for g in range(groups):
        order += [(i, False) for i in range(g * size, (g + 1) * size)]
        order += [((g + 1) * size - 1, True)] * per_group
    return order


def _renumber(layers) -> None:
    """Set every module's ``layer_idx`` to its block's new position (the KV cache is indexed by it)."""
    for index, layer in enumerate(layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index


def _grow_config(config, order) -> None:
    config.num_hidden_layers = len(order)
    for key in PER_LAYER_CONFIG:
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and len(values) == sum(1 for _, new in order if not new):
            setattr(config, key, [values[i] for i, _ in order])


def _probe(model):
    import torch  # defers torch

    ids = torch.arange(1, 9).unsqueeze(0) % max(2, model.config.vocab_size)
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


def apply_llamapro(model, config):
    """Insert the new blocks, check the output did not change, and train only them."""
    import torch  # defers torch

    check_multimodal_flags(model, config)
    t = config.tuner
    parent, attr = decoder_layers(model)
    layers = getattr(parent, attr)
    order = expansion_plan(len(layers), t.llamapro_num_new_blocks, t.llamapro_num_groups)
    was_training = model.training
    model.eval()
    before = _probe(model)
    expanded = []
    for index, new in order:
        if not new:
            expanded.append(layers[index])
            continue
        block = copy.deepcopy(layers[index])
        if not _zero_residual_outputs(block):
            raise TrainError(f"llamapro: no output projection ({', '.join(RESIDUAL_OUTPUTS)}) found in "
                             f"{type(block).__name__}; this architecture cannot take identity blocks")
        expanded.append(block)
    setattr(parent, attr, torch.nn.ModuleList(expanded))
    _renumber(expanded)
    for cfg in {id(c): c for c in (model.config, getattr(model.config, "text_config", None)) if c is not None}.values():
        _grow_config(cfg, order)
    after = _probe(model)
    if not torch.allclose(before, after, atol=1e-5, rtol=1e-4):
        raise TrainError(f"llamapro: zeroing the new blocks' output projections changed this model's output "
                         f"({type(model).__name__}); its blocks write to the residual stream some other way")
    model.train(was_training)
    new_blocks = [block for block, (_, new) in zip(expanded, order) if new]
    for param in model.parameters():
        param.requires_grad_(False)
    for block in new_blocks:
        for param in block.parameters():
            param.requires_grad_(True)
    print(f"[swiftkit] llamapro: {len(layers)} -> {len(expanded)} layers; {len(new_blocks)} new blocks train",
          file=sys.stderr)
    return model
