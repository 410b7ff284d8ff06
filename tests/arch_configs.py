"""Tiny configs (2 layers, hidden 64) of any architecture family, from the family's own config class.

``tiny_config(model_type, architecture)`` starts from ``transformers.CONFIG_MAPPING[model_type]``,
shrinks every size field the family defines (whatever it calls it: ``hidden_size`` / ``n_embd`` /
``d_model``, ``num_hidden_layers`` / ``n_layer`` / ``num_layers``, expert counts, MLA ranks, SSM
state sizes, ...) and cuts per-layer lists (``layer_types``, block patterns) to two layers, keeping
one of each kind where the family mixes them. Quirks of single families live in ``OVERRIDES``, not
in code. A family that cannot be built raises :class:`TinyConfigError` with the reason.
"""

from __future__ import annotations

VOCAB_SIZE = 512  # the vocabulary of tests/tiny.py's tokenizers
LAYERS = 2
HIDDEN = 64

# Size fields by every name families use for them; a field is set only where the family has it.
SIZES: dict[str, object] = {
    # width and depth
    "hidden_size": HIDDEN, "n_embd": HIDDEN, "d_model": HIDDEN,
    "num_hidden_layers": LAYERS, "n_layer": LAYERS, "num_layers": LAYERS,
    "intermediate_size": 128, "ffn_dim": 128, "ffn_hidden_size": 128, "n_inner": 128,
    # attention: 4 heads of 16, 2 key/value heads
    "num_attention_heads": 4, "n_head": 4, "num_heads": 4, "attention_heads": 4,
    "num_key_value_heads": 2, "num_kv_heads": 2, "num_query_groups": 2,
    "head_dim": 16, "rotary_dim": 8, "partial_rotary_factor": 0.5,
    "max_position_embeddings": 512, "n_positions": 512, "n_ctx": 512,
    "sliding_window": 32, "attention_window_size": 32, "window_size": 32,
    # mixture of experts: 4 experts, 2 per token, one shared
    "num_experts": 4, "n_routed_experts": 4, "num_local_experts": 4, "moe_num_experts": 4,
    "num_experts_per_tok": 2, "num_experts_per_token": 2, "moe_topk": 2, "moe_k": 2,
    "n_shared_experts": 1, "num_shared_experts": 1, "moe_num_shared_experts": 1,
    "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32, "expert_ffn_hidden_size": 32,
    "shared_intermediate_size": 32, "moe_shared_expert_intermediate_size": 32,
    "n_group": 1, "topk_group": 1, "num_expert_group": 1, "first_k_dense_replace": 1, "zero_expert_num": 2,
    # multi-head latent attention
    "q_lora_rank": 32, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
    "index_topk": 8, "index_head_dim": 16, "index_n_heads": 2,
    # state-space / linear-attention blocks
    "state_size": 8, "ssm_state_size": 8, "mamba_d_state": 8, "time_step_rank": 8, "mamba_dt_rank": 8,
    "mamba_n_heads": 8, "mamba_d_head": 16, "mamba_num_heads": 8, "mamba_head_dim": 16,
    "n_groups": 1, "mamba_n_groups": 1, "mamba_ngroups": 1, "chunk_size": 16, "mamba_chunk_size": 16,
    "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_num_key_heads": 2,
    "linear_num_value_heads": 4, "linear_head_dim": 16, "linear_num_heads": 4,
}

# Per-layer lists, cut to LAYERS entries (a mix of kinds is kept: the first entry, then the first
# entry of a different kind).
LAYER_LISTS = ("layer_types", "mlp_layer_types", "layers_block_type", "no_rope_layers", "attention_layers")

# model_type (or "model_type.sub_config") -> fields the generic rules get wrong for it (applied last).
OVERRIDES: dict[str, dict] = {
    # hybrids: two layers with one block of each kind (the defaults start with a run of one kind)
    "granitemoehybrid": {"layer_types": ["mamba", "attention"]},
    "jamba": {"attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2, "expert_layer_offset": 1},
    "lfm2": {"full_attn_idxs": [1], "layer_types": ["conv", "full_attention"]},
    "lfm2_moe": {"layer_types": ["conv", "full_attention"], "num_dense_layers": 1},
    "recurrent_gemma": {"block_types": ["recurrent", "attention"]},
    "zamba2": {"layers_block_type": ["mamba", "hybrid"], "hybrid_layer_ids": [1], "mamba_headdim": 16,
               "attention_head_dim": 32, "attention_hidden_size": 128, "adapter_rank": 8},
    # every block kind of the family's pattern (linear attention, MoE, attention, MLP): four layers
    "nemotron_h": {"layers_block_type": ["linear_attention", "moe", "full_attention", "mlp"], "num_hidden_layers": 4},
    # state-space heads must tile expand * hidden (2 * 64 = 8 heads of 16)
    "mamba2": {"num_heads": 8},
    "falcon_h1": {"mamba_d_ssm": None},
}

class TinyConfigError(ValueError):
    """The family cannot be built as a tiny model; the message says why."""


def _two_layers(values: list) -> list:
    """``LAYERS`` entries of a per-layer list, one of each kind when the list mixes kinds."""
    if not values:
        return values
    first = values[0]
    other = next((v for v in values if v != first), first)
    return ([first, other] + [first] * LAYERS)[:LAYERS]


def shrink(defaults: dict, model_type: str, vocab_size: int, token_ids: dict) -> dict:
    """The keyword arguments that make the family's default config tiny."""
    kwargs = {key: value for key, value in SIZES.items() if key in defaults}
    kwargs["vocab_size"] = vocab_size
    for key in LAYER_LISTS:
        if isinstance(defaults.get(key), list):
            kwargs[key] = _two_layers(defaults[key])
    if "kv_lora_rank" in defaults:  # multi-head latent attention: no grouped keys, head_dim is the rotary part
        kwargs["num_key_value_heads"] = kwargs["num_attention_heads"]
        kwargs["head_dim"] = kwargs["qk_rope_head_dim"]
    for key, value in token_ids.items():
        if key in defaults:
            kwargs[key] = value
    kwargs.update(OVERRIDES.get(model_type, {}))
    return kwargs


def tiny_config(model_type: str, architecture: str, vocab_size: int = VOCAB_SIZE, *,
                bos_token_id: int = 0, eos_token_id: int = 1, pad_token_id: int = 2):
    """A 2-layer, hidden-64 config of ``model_type`` from its own config class, with ``architectures``.

    The special token ids (a tokenizer's) replace the family's defaults, which lie outside a tiny
    vocabulary.
    """
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        raise TinyConfigError(f"{model_type}: the installed transformers has no config class for it")
    config_cls = CONFIG_MAPPING[model_type]
    sub_configs = getattr(config_cls, "sub_configs", {}) or {}
    defaults = config_cls().to_dict()
    token_ids = {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id, "pad_token_id": pad_token_id}
    kwargs = shrink(defaults, model_type, vocab_size, token_ids)
    for name in sub_configs:
        if isinstance(defaults.get(name), dict):
            sub = defaults[name]
            kwargs[name] = {**sub, **shrink(sub, f"{model_type}.{name}", vocab_size, token_ids)}
    try:
        config = config_cls(**kwargs)
    except Exception as exc:  # any failure of the family's own validation is the reason
        raise TinyConfigError(f"{model_type}: {config_cls.__name__} rejects the tiny sizes: {exc}") from exc
    config.architectures = [architecture]
    return config
