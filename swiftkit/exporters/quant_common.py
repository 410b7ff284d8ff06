"""What the torchao and bitsandbytes quantizers share.

Both quantize the way transformers does while loading: the merged model is saved once
(:meth:`ExportSource.merged_dir`) and loaded back with a quantization config (:func:`load_quantized`), because
only a model that transformers quantized carries the ``hf_quantizer`` that serializes the quantized tensors
and writes ``quantization_config`` into config.json (quantizing the in-memory model with ``torchao.quantize_``
and calling ``save_pretrained`` fails: torchao 0.18's tensors cannot be saved that way).
:func:`save_quantized` writes the result with the tokenizer and the generation config (the template's
end-of-turn tokens as ``eos_token_id``), so ``AutoModelForCausalLM.from_pretrained(folder)`` needs no swiftkit.

:func:`quantized_linears` lists the layers a quantizer converts (every ``nn.Linear`` but the output head,
which transformers keeps in full precision) with their input sizes; :func:`model_skeleton` builds the model
from its config.json on the meta device, so a group size that cannot work is refused before weights load.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

from swiftkit.core.checkpoints import find_checkpoint, read_train_args
from swiftkit.core.errors import ConfigError, SwiftkitError
from swiftkit.exporters.base import require_full_precision
from swiftkit.models.loading import with_model_class


def require_package(module: str, method: str, extra: str) -> None:
    """Import ``module`` or raise one line: ``--quant_method METHOD needs the MODULE package: pip install ...``."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        detail = "" if missing in (module, None) else f" (importing it failed: {exc})"
        raise ConfigError(f"--quant_method {method} needs the {module} package: pip install "
                          f"'swiftkit[{extra}]'{detail}") from exc


def quantized_linears(model) -> list[tuple[str, int]]:
    """``(name, in_features)`` of every linear layer a transformers quantizer converts: all ``nn.Linear``
    modules except the output head (kept in full precision, like the input embeddings)."""
    import torch  # defers torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [(name, module.in_features) for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head]


def check_group_size(layers: list[tuple[str, int]], group_size: int, method: str) -> None:
    """Raise one line when ``group_size`` does not divide the input size of every layer in ``layers``."""
    if group_size == -1:
        return
    bad = [(name, size) for name, size in layers if size % group_size]
    if not bad:
        return
    name, size = bad[0]
    others = f" (and {len(bad) - 1} more layers)" if len(bad) > 1 else ""
    common = math.gcd(*(s for _, s in layers))
    fits = min(common & -common, 1 << (group_size.bit_length() - 1))  # a power of two dividing every size
    hint = f"--group_size {fits} or -1" if fits >= 16 else "--group_size -1"
    raise ConfigError(f"--group_size {group_size} does not divide the input size {size} of {name}{others}; "
                      f"{method} quantizes each layer's inputs in groups of --group_size: use {hint} "
                      "(one scale per output channel)")


def local_model_dir(config) -> Path | None:
    """The local folder holding the model's config.json: --model, else the --adapters run's base model."""
    candidates = [config.model.model]
    if config.adapter.adapters:
        try:
            train_args = read_train_args(find_checkpoint(config.adapter.adapters[0]))[0] or {}
        except SwiftkitError:
            train_args = {}  # the recipe reports a bad --adapters folder when it loads it
        candidates.append(train_args.get("model"))
    for candidate in candidates:
        if candidate and (Path(candidate).expanduser() / "config.json").is_file():
            return Path(candidate).expanduser()
    return None


def model_skeleton(config):
    """The model --model / --adapters names, built from its config.json on the meta device (no weights
    read), or None when it is not a local folder (a hub id not yet resolved) or cannot be built that way;
    the writer then checks the loaded model instead."""
    folder = local_model_dir(config)
    if folder is None:
        return None
    import torch  # defers torch
    from transformers import AutoConfig  # defers transformers

    trust = config.model.trust_remote_code
    try:
        model_config = AutoConfig.from_pretrained(folder, trust_remote_code=trust)
        with torch.device("meta"):
            return with_model_class(lambda auto: auto.from_config(model_config, trust_remote_code=trust))
    except Exception:  # noqa: BLE001 - best effort: write() checks the loaded model again
        return None


def load_quantized(source, quantization_config):
    """The merged model of ``source`` loaded back from disk with ``quantization_config`` (transformers
    quantizes each weight as it loads), in the merged model's dtype and on its device."""
    require_full_precision(source, f"--quant_method {source.config.quantize.method} quantizes")
    model = source.model
    trust = bool(getattr(getattr(source.config, "model", None), "trust_remote_code", False))
    kwargs = dict(dtype=model.dtype, quantization_config=quantization_config, trust_remote_code=trust,
                  device_map={"": str(model.device)})
    folder = source.merged_dir()
    return with_model_class(lambda auto: auto.from_pretrained(folder, **kwargs)).eval()


def save_quantized(model, source, output_dir: Path) -> None:
    """Save the quantized ``model`` as safetensors into ``output_dir`` with the tokenizer and the source's
    generation config, whose ``eos_token_id`` includes the template's end-of-turn tokens."""
    generation = source.generation_config()
    if generation is not None:
        model.generation_config = generation
    model.save_pretrained(output_dir, safe_serialization=True)
    source.save_tokenizer(output_dir)
