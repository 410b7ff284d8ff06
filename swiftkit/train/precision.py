"""--bf16 / --fp16: mixed precision as the machine can run it, decided (and refused) before weights load.

Mixed precision keeps the weights in --torch_dtype and runs the forward pass under torch autocast in
bfloat16 or float16. On a CUDA GPU, --bf16 needs bfloat16 support (Ampere or newer) and is on by
default where the GPU has it. Without an accelerator, transformers (5.x) trains in bf16 once
``use_cpu`` is set (it refuses bf16 on the CPU otherwise): --bf16 runs natively on CPUs with
AVX512-BF16/AMX and emulated (slower than float32) elsewhere, where the run says so in one line
(:func:`cpu_bf16_notice`). --fp16 on the CPU is refused: torch could autocast to
float16 there, but accelerate (which runs the trainer's autocast) leaves fp16 off on the CPU without a
word, so the run would train in float32 while its args.json said fp16. A dtype torch cannot autocast
to on the device is a one-line error naming the flag too.
"""

from __future__ import annotations

from swiftkit.core import distributed
from swiftkit.core.errors import ConfigError


def _accelerator() -> str | None:
    """The accelerator torch trains on (``cuda``, ``mps``, ...), or None on a CPU-only machine."""
    import torch  # defers torch

    current = torch.accelerator.current_accelerator() if hasattr(torch, "accelerator") else None
    if current is not None:
        return current.type
    return "cuda" if torch.cuda.is_available() else None


def matmul_dtype(t):
    """The dtype a matmul on ``t`` runs in here: autocast's where autocast is on for its device, else its own."""
    import torch  # defers torch

    device = t.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else t.dtype


def _autocasts(device: str, dtype) -> bool:
    """Whether torch runs a matmul under autocast to ``dtype`` on ``device`` (and gets ``dtype`` back)."""
    import torch  # defers torch

    try:
        with torch.autocast(device, dtype=dtype):
            out = torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except (RuntimeError, ValueError, AssertionError):
        return False
    return out.dtype == dtype


# The /proc/cpuinfo flags of CPUs that compute in bfloat16 natively (dot products of bf16 pairs).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU has bfloat16 instructions (``NATIVE_BF16_FLAGS``); None where the flags cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), None)
    except OSError:
        return None
    return None if flags is None else any(flag in flags for flag in NATIVE_BF16_FLAGS)


def cpu_bf16_notice(bf16: bool | None, cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The line printed when --bf16 trains on a CPU without bfloat16 instructions: torch emulates the
    bf16 products there (converting to float32 and back), which is slower than float32 training."""
    if not bf16 or _accelerator() is not None or cpu_native_bf16(cpuinfo) is not False:
        return None
    return ("--bf16: this CPU has no bfloat16 instructions (no avx512_bf16 or amx_bf16 in /proc/cpuinfo), so torch "
            "emulates them and training runs much slower than in float32 (13x measured on an AVX2 CPU); --bf16 "
            "false is faster on this machine")


def mixed_precision(bf16: bool | None, fp16: bool | None) -> dict:
    """transformers' ``bf16``, ``fp16`` and ``use_cpu`` for --bf16/--fp16 (None: the default) on this
    machine; a precision the device cannot run is a ConfigError naming the flag."""
    import torch  # defers torch

    device = _accelerator()
    if device == "cuda" and bf16 is None and not fp16:
        bf16 = torch.cuda.is_bf16_supported()  # on by default where the GPU has it
    bf16, fp16 = bool(bf16), bool(fp16)
    if device == "cuda" and bf16 and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--bf16: this GPU ({torch.cuda.get_device_name()}) has no bfloat16 support; use --fp16 "
                          "true, or --bf16 false for float32")
    if fp16 and device is None:
        raise ConfigError("--fp16: the trainer (accelerate) does not run float16 mixed precision on the CPU and would "
                          "train in float32; use --bf16 true on the CPU (float16 needs a CUDA GPU)")
    where = device or "cpu"
    for flag, on, dtype in (("--bf16", bf16, torch.bfloat16), ("--fp16", fp16, torch.float16)):
        if on and not _autocasts(where, dtype):
            raise ConfigError(f"{flag}: torch {torch.__version__} cannot autocast to {str(dtype)[6:]} on this "
                              f"{where}; train without it ({flag} false)")
    return {"bf16": bf16, "fp16": fp16, "use_cpu": _on_cpu(device, bf16)}


def weights_precision(model) -> dict:
    """``bf16``/``fp16`` that match ``model``'s weights dtype (TRL's trainers compute in it), with
    ``use_cpu`` as :func:`mixed_precision` sets it."""
    import torch  # defers torch

    dtype = next(model.parameters()).dtype
    bf16, fp16 = dtype == torch.bfloat16, dtype == torch.float16
    return {"bf16": bf16, "fp16": fp16, "use_cpu": _on_cpu(_accelerator(), bf16)}


def _on_cpu(device: str | None, bf16: bool) -> bool:
    """transformers' ``use_cpu`` on a machine without an accelerator: needed for bf16 there, and for
    several ranks (accelerate then runs them as a multi-CPU group)."""
    return device is None and (bf16 or distributed.ranks().distributed)
