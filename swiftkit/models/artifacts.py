"""Loading exported artifacts through ``--model``: GGUF files and pre-quantized checkpoints.

A GGUF artifact is a folder without ``config.json`` holding one ``*.gguf`` file (or the file's own path):
transformers reads it with ``gguf_file=`` and dequantizes the weights, so it loads, generates and trains like
any other model. :func:`find_gguf` picks the file, :func:`gguf_model_type` reads the architecture from the file
header without loading anything, and :func:`as_plain_model` drops the GGUF marker transformers leaves on the
model (with it the model counts as quantized and refuses ``save_pretrained``).

A checkpoint whose ``config.json`` has a ``quantization_config`` (GPTQ, AWQ, bitsandbytes, torchao, ...)
needs its method's package to load: :func:`check_quantized_loadable` says which one is missing, with the
install hint, before any weights load.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

from swiftkit.models.errors import ModelNotFoundError

GGUF_MAGIC = b"GGUF"

# quant_method in config.json -> (modules that must all be importable, install hint). Methods not listed
# here need no package beyond transformers/torch (fp8, bitnet, ...) or are left to transformers' own check.
QUANT_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "bitsandbytes": (("bitsandbytes",), "pip install 'swiftkit[qlora]'"),
    "torchao": (("torchao",), "pip install 'swiftkit[torchao]'"),
    "gptq": (("gptqmodel", "optimum"), "pip install 'swiftkit[gptq]'"),
    # transformers 5 loads AWQ checkpoints through gptqmodel (autoawq alone is not enough).
    "awq": (("gptqmodel",), "pip install 'swiftkit[awq]' (transformers loads AWQ through gptqmodel)"),
    "compressed-tensors": (("compressed_tensors",), "pip install compressed-tensors"),
    "quanto": (("optimum.quanto",), "pip install optimum-quanto"),
    "hqq": (("hqq",), "pip install hqq"),
    "aqlm": (("aqlm",), "pip install aqlm"),
    "vptq": (("vptq",), "pip install vptq"),
    "spqr": (("spqr_quant",), "pip install spqr_quant"),
    "higgs": (("flute",), "pip install flute-kernel"),
    "auto-round": (("auto_round",), "pip install auto-round"),
    "quark": (("quark",), "pip install amd-quark"),
    "fp_quant": (("fp_quant",), "pip install fp_quant"),
}

# GGUF general.architecture -> transformers model_type, where the two names differ.
_GGUF_TYPES = {
    "command-r": "cohere",
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
}

# GGUF metadata value types: id -> struct format of a scalar (8: string, 9: array)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing (optimum for optimum.quanto)
        return False


def quantization_method(path) -> str | None:
    """The ``quant_method`` of ``path/config.json``'s ``quantization_config``, or None when it has none."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # an unreadable config.json is reported where it is loaded
    quant = config.get("quantization_config") if isinstance(config, dict) else None
    if not isinstance(quant, dict):
        return None
    method = quant.get("quant_method")
    if method is None and (quant.get("load_in_4bit") or quant.get("load_in_8bit")):
        method = "bitsandbytes"  # old bitsandbytes configs had no quant_method
    return str(method) if method is not None else None


def check_quantized_loadable(path) -> str | None:
    """The quantization method of the checkpoint in ``path`` (None: not quantized), after checking that the
    package the method needs is importable; a missing one is a one-line :class:`ModelNotFoundError`."""
    method = quantization_method(path)
    if method is None or method not in QUANT_PACKAGES:
        return method
    modules, hint = QUANT_PACKAGES[method]
    missing = [m for m in modules if not _module_available(m)]
    if missing:
        raise ModelNotFoundError(
            f"--model {str(path)!r} is a {method}-quantized checkpoint (config.json quantization_config), which "
            f"needs {' and '.join(missing)} to load: {hint}"
        )
    return method


def is_gguf(path: Path) -> bool:
    """Whether the file at ``path`` starts with the GGUF magic bytes."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def find_gguf(folder: Path, model: str) -> str | None:
    """The name of the one ``*.gguf`` file in ``folder`` (None when it holds none); several are an error
    asking for the file's path."""
    found = sorted(p.name for p in folder.glob("*.gguf") if p.is_file())
    if len(found) > 1:
        raise ModelNotFoundError(
            f"--model {model!r} holds several GGUF files ({', '.join(found)}): pass the path of the one to load, "
            f"e.g. --model {str(folder / found[0])!r}"
        )
    return found[0] if found else None


def check_gguf_file(path: Path, model: str) -> None:
    """A one-line error unless ``path`` is a readable GGUF file."""
    if not is_gguf(path):
        raise ModelNotFoundError(
            f"--model {model!r}: {str(path)!r} is not a GGUF file (it does not start with 'GGUF'); it may be "
            "truncated or another format: export or download it again"
        )


def _read(fh, fmt: str):
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise EOFError
    return struct.unpack(fmt, data)[0]


def _read_string(fh) -> str:
    length = _read(fh, "<Q")
    data = fh.read(length)
    if len(data) != length:
        raise EOFError
    return data.decode("utf-8", errors="replace")


def _skip_value(fh, kind: int) -> None:
    if kind in _SCALARS:
        fh.seek(struct.calcsize(_SCALARS[kind]), 1)
    elif kind == _STRING:
        fh.seek(_read(fh, "<Q"), 1)
    elif kind == _ARRAY:
        item, count = _read(fh, "<I"), _read(fh, "<Q")
        if item in _SCALARS:
            fh.seek(struct.calcsize(_SCALARS[item]) * count, 1)
        else:
            for _ in range(count):
                _skip_value(fh, item)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")


def read_gguf_fields(path, keys) -> dict:
    """The scalar and string metadata values named in ``keys`` from the header of the GGUF file ``path``
    (arrays are skipped; keys not found are absent). Reads only the header, without numpy or gguf."""
    wanted, out = set(keys), {}
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != GGUF_MAGIC or _read(fh, "<I") < 2:  # version 1 (2023) used 32-bit lengths
                return out
            _read(fh, "<Q")  # tensor count
            for _ in range(_read(fh, "<Q")):
                key, kind = _read_string(fh), _read(fh, "<I")
                if key in wanted and kind in _SCALARS:
                    out[key] = _read(fh, _SCALARS[kind])
                elif key in wanted and kind == _STRING:
                    out[key] = _read_string(fh)
                else:
                    _skip_value(fh, kind)
                if wanted <= out.keys():
                    break
    except (OSError, EOFError, ValueError, struct.error):
        pass  # a damaged header: what was read so far; loading the file reports the damage
    return out


def gguf_model_type(path) -> str | None:
    """The transformers ``model_type`` of the GGUF file ``path`` (from ``general.architecture``)."""
    fields = read_gguf_fields(path, ("general.architecture", "general.name"))
    arch = fields.get("general.architecture")
    if not isinstance(arch, str):
        return None
    if arch == "llama" and "mistral" in str(fields.get("general.name", "")).lower():
        return "mistral"  # llama.cpp writes Mistral models as llama, as transformers reads them back
    return _GGUF_TYPES.get(arch, arch)


def as_plain_model(model):
    """``model`` loaded from a GGUF file without the GGUF quantizer transformers attaches: the weights are
    already dequantized, and with the marker the model counts as quantized and refuses save_pretrained."""
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)) == "gguf":
        quantizer.remove_quantization_config(model)
    return model
