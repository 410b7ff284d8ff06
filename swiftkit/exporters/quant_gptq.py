"""GPTQ and AWQ: weight-only quantizers fitted to calibration text, through GPTQModel.

``--quant_method gptq`` writes 2/3/4/8-bit GPTQ (symmetric, no act-order: the layout every GPTQ kernel
loads); ``--quant_method awq`` writes 4-bit AWQ with zero points in the GEMM layout. Both write a plain
transformers folder (packed int32 weights in safetensors, ``quantization_config`` in config.json, the
training chat template's tokenizer, the source's generation config) that
``AutoModelForCausalLM.from_pretrained`` loads where GPTQModel is installed (GPTQ also needs optimum).

Why GPTQModel for both: auto-gptq does not import with transformers 5; AutoAWQ is deprecated, its own CPU
loader needs intel-extension-for-pytorch (whose newest build, 2.8, refuses torch 2.13), and transformers 5
loads AWQ folders through GPTQModel anyway. GPTQModel 7.6 quantizes both on a CPU: a tiny llama takes about
a second per method, after a one-time ~30 s build of its CPU packing extension (kept in ~/.cache/gptqmodel).

``check`` refuses, before weights load, bits a method cannot write, (for a local model, from config.json on
the meta device) a ``--group_size`` that does not divide every layer's input and, for AWQ, output sizes
GPTQModel's AWQ cannot scale, and GPTQModel/optimum missing. ``write`` repeats the shape checks on the
loaded model, then quantizes :meth:`ExportSource.merged_dir` (GPTQModel loads it itself, layer by layer)
with :attr:`ExportSource.calibration`, ``--quant_bits``, ``--group_size`` and ``--quant_batch_size``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from swiftkit.core._compat import gptqmodel_workarounds
from swiftkit.core.errors import ConfigError, SwiftkitError
from swiftkit.exporters.base import ExportMethod, ExportSource, require_full_precision
from swiftkit.exporters.quant_common import check_group_size, model_skeleton, quantized_linears

GPTQ_BITS = (2, 3, 4, 8)
AWQ_BITS = (4,)
DEFAULT_BITS = 4
MIN_GPTQMODEL = (7, 6)

_WHY_NOT = {
    "gptq": "auto-gptq does not import with transformers 5",
    "awq": "AutoAWQ is deprecated and transformers 5 loads AWQ checkpoints through GPTQModel",
}
# GPTQModel 7.6's AWQ clip search skips attention query/key projections and takes the other layers' output
# channels in blocks of 64 (an assertion fails otherwise).
_AWQ_NO_CLIP = ("q_", "k_", "query", "key", "Wqkv")
_AWQ_CHANNEL_BLOCK = 64


def gptq_method() -> ExportMethod:
    """``--quant_method gptq``: GPTQ with 2, 3, 4 or 8 bits per weight (symmetric, no act-order: the layout
    every GPTQ kernel loads)."""
    return ExportMethod(
        name="gptq", write=lambda source, out: write_quantized("gptq", source, Path(out)),
        check=lambda config: check_quantizer("gptq", config), calibration=True,
        label=lambda config: f"gptq-int{quant_bits(config)}",
        description="GPTQ 2/3/4/8-bit weights fitted to calibration text (GPTQModel); loads in transformers "
                    "with gptqmodel + optimum, and in vLLM",
    )


def awq_method() -> ExportMethod:
    """``--quant_method awq``: AWQ 4-bit weights with zero points in the GEMM layout (what AutoAWQ wrote)."""
    return ExportMethod(
        name="awq", write=lambda source, out: write_quantized("awq", source, Path(out)),
        check=lambda config: check_quantizer("awq", config), calibration=True,
        label=lambda config: f"awq-int{quant_bits(config)}",
        description="AWQ 4-bit weights (GEMM layout) scaled on calibration activations (GPTQModel); loads in "
                    "transformers with gptqmodel, and in vLLM",
    )


def quant_bits(config) -> int:
    """``--quant_bits``, 4 when not given."""
    bits = config.quantize.quant_bits
    return DEFAULT_BITS if bits is None else bits


def check_quantizer(method: str, config) -> None:
    """Refuse before any weights load: bits the method cannot write; for a local model, layer shapes that
    cannot work (config.json on the meta device); GPTQModel (and, for GPTQ, optimum) missing, broken or too
    old."""
    bits, allowed = quant_bits(config), (GPTQ_BITS if method == "gptq" else AWQ_BITS)
    if bits not in allowed:
        hint = "use --quant_bits 4, or --quant_method gptq for 2, 3 or 8 bits" if method == "awq" else \
            "use --quant_bits 2, 3, 4 or 8"
        raise ConfigError(f"--quant_method {method} writes {'/'.join(map(str, allowed))}-bit weights, got "
                          f"--quant_bits {bits}: {hint}")
    skeleton = model_skeleton(config)
    if skeleton is not None:
        check_layer_shapes(method, skeleton, config.quantize.group_size)
    require_gptqmodel(method)


def require_gptqmodel(method: str) -> None:
    """Import GPTQModel (and optimum for GPTQ) or raise one line with the install hint."""
    install = f"pip install 'swiftkit[{method}]'"
    try:
        import gptqmodel  # defers gptqmodel (imports torch and transformers)
    except ModuleNotFoundError as e:
        if e.name != "gptqmodel":
            raise SwiftkitError(f"--quant_method {method} needs GPTQModel, which is installed but does not import "
                                f"(no module {e.name!r}): {install}") from e
        raise SwiftkitError(f"--quant_method {method} needs GPTQModel ({_WHY_NOT[method]}): {install}") from e
    except Exception as e:  # a broken install: say what broke it, on one line
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise SwiftkitError(f"--quant_method {method} needs GPTQModel, which is installed but does not import "
                            f"({type(e).__name__}: {reason}): {install}") from e
    if _version_tuple(getattr(gptqmodel, "__version__", "0")) < MIN_GPTQMODEL:
        raise SwiftkitError(f"--quant_method {method} needs GPTQModel >= {'.'.join(map(str, MIN_GPTQMODEL))} "
                            f"(found {gptqmodel.__version__}): {install}")
    if method == "gptq":
        try:
            import optimum.gptq  # noqa: F401  # defers optimum (transformers loads GPTQ folders through it)
        except ImportError as e:
            raise SwiftkitError("--quant_method gptq needs optimum (transformers loads GPTQ checkpoints through "
                                f"it): {install}") from e


def check_layer_shapes(method: str, model, group_size: int) -> None:
    """Refuse, before the slow part, a group size that does not fit every quantized layer's input (the
    weights would quantize but not load) and, for AWQ, output sizes GPTQModel's AWQ cannot scale."""
    check_group_size(quantized_linears(model), group_size, method)
    if method != "awq":
        return
    import torch  # defers torch

    head = model.get_output_embeddings()
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is head:
            continue
        if module.out_features % _AWQ_CHANNEL_BLOCK and not any(p in name.rsplit(".", 1)[-1] for p in _AWQ_NO_CLIP):
            raise ConfigError(f"--quant_method awq needs layer output sizes that are multiples of "
                              f"{_AWQ_CHANNEL_BLOCK}, but {name} has {module.out_features}: use --quant_method "
                              "gptq for this model")


def write_quantized(method: str, source: ExportSource, output_dir: Path) -> None:
    """Quantize ``source.merged_dir()`` with GPTQModel into ``output_dir``: packed weights and config.json
    with its ``quantization_config``, then the source's tokenizer and generation config."""
    require_full_precision(source, f"--quant_method {method} quantizes")
    q = source.config.quantize
    bits, group_size = quant_bits(source.config), q.group_size
    check_layer_shapes(method, source.model, group_size)
    rows = calibration_inputs(method, source.calibration)

    import torch  # defers torch
    from gptqmodel import BACKEND, AWQConfig, GPTQConfig, GPTQModel  # defers gptqmodel

    if method == "gptq":
        # act_group_aware (GPTQModel's reordering that keeps the plain layout) needs groups.
        qconfig = GPTQConfig(bits=bits, group_size=group_size, sym=True, desc_act=False,
                             act_group_aware=group_size > 0)
        backend = BACKEND.AUTO  # GPTQModel packs GPTQ with its torch kernel on any device
    else:
        qconfig = AWQConfig(bits=bits, group_size=group_size, sym=False)  # sym=False: zero points
        backend = BACKEND.AWQ_TORCH  # the default AWQ packer is a CUDA kernel; the torch one runs anywhere
    device = None if torch.cuda.is_available() else "cpu"  # None: GPTQModel picks the GPU(s)
    with tempfile.TemporaryDirectory(prefix="swiftkit-gptqmodel-logs-") as logs:
        gptqmodel_workarounds(Path(logs))
        model = GPTQModel.load(str(source.merged_dir()), qconfig, device=device)
        model.quantize(rows, batch_size=q.quant_batch_size, backend=backend, calibration_data_min_length=0)
        model.save(str(output_dir))
    # GPTQModel saves a generation config of its own (do_sample=True added); the artifact keeps the source's.
    generation = source.generation_config()
    if generation is not None:
        generation.save_pretrained(output_dir)
    source.save_tokenizer(output_dir)


def calibration_inputs(method: str, calibration: list[dict] | None) -> list[dict]:
    """The rows GPTQModel takes: ``input_ids`` and ``attention_mask`` only, empty rows dropped (GPTQModel's
    own minimum length is turned off: every row the calibration step chose is used)."""
    rows = []
    for row in calibration or []:
        ids = list(row["input_ids"])
        if ids:
            rows.append({"input_ids": ids, "attention_mask": list(row.get("attention_mask") or [1] * len(ids))})
    if not rows:
        raise SwiftkitError(f"--quant_method {method} needs calibration rows, and --dataset gave none: pass "
                            "--dataset with conversations the model will serve")
    return rows


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
