"""Field groups of ``swiftkit export`` and ``swiftkit quantize``: the format, quantization, parity and hub flags.

``--quant_method`` names a quantizer the same way ``--export_format`` names a format: both are answered
by the ``swiftkit_get_export_format`` hook (built in: merged, bnb, torchao, gptq, awq, gguf), so the set of
names is the plugins' and is checked when the command starts, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from swiftkit.config.groups import _check, arg

# The GGUF tensor types swiftkit's writer produces (the gguf package quantizes these itself).
GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
# k-quants and i-quants: the gguf package reads them but cannot write them.
GGUF_LLAMA_CPP_ONLY = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k",
                       "iq4_xs", "iq4_nl", "iq3_xxs", "iq2_xs")
QLORA_MERGES = ("dequantized", "full_precision")


@dataclass(frozen=True)
class ExportArgs:
    export_format: str = arg(
        "merged", "Output format, chosen through the swiftkit_get_export_format hook (built in: merged: full "
        "safetensors weights with LoRA merged in, loadable by plain transformers). --quant_method, when given, "
        "names the format instead."
    )
    output_dir: Optional[str] = arg(
        None, "Folder to create (must not exist); default: <first adapter>-<format>, or ./<model name>-<format> "
        "for --model alone."
    )
    check_parity: bool = arg(
        True, "Load the written artifact back and compare it with the source model: chat-template ids, stop "
        "tokens, logits, greedy replies and perplexity (parity.json). A template or stop-token mismatch fails "
        "the export; false skips the check (export_info.json then says so)."
    )
    parity_max_new_tokens: int = arg(16, "Tokens generated per prompt for the parity report's greedy replies.")
    qlora_merge: Literal["dequantized", "full_precision"] = arg(
        "dequantized", "Adapters trained on a 4/8-bit base (QLoRA): dequantized merges into the dequantized "
        "quantized weights the adapter was trained against (the merged model answers as the adapter did); "
        "full_precision merges into the original full-precision base weights instead."
    )

    def __post_init__(self):
        _check(self.parity_max_new_tokens > 0, "--parity_max_new_tokens must be > 0")


@dataclass(frozen=True)
class QuantizeArgs:
    quant_method: Optional[str] = arg(
        None, "Quantize the (merged) model: bnb (bitsandbytes 4/8-bit), torchao (CPU int8/int4 weight-only), "
        "gptq, awq (swiftkit[gptq] / swiftkit[awq]) or gguf (llama.cpp's file format), or a plugin's method "
        "(swiftkit_get_export_format)."
    )
    quant_bits: Optional[int] = arg(
        None, "Bits per weight: bnb 4|8, torchao 8|4|3|2, gptq 2|3|4|8, awq 4; gguf: 8 means --gguf_type q8_0 "
        "and 4 means q4_0. Default: bnb, gptq and awq 4; torchao 8 (its 4-bit files are no smaller on CPU); gguf f16 "
        "unless --gguf_type."
    )
    group_size: int = arg(
        128, "Weights sharing one scale (torchao int4 and below, gptq, awq); must divide every quantized layer's "
        "input size. -1 is one group per output channel."
    )
    quant_n_samples: int = arg(
        64, "Calibration conversations (gptq, awq), taken from --dataset through the chat template; 16 more "
        "are held aside for the parity report's perplexity."
    )
    quant_seqlen: int = arg(512, "Calibration rows are cut to this many tokens.")
    quant_batch_size: int = arg(1, "Calibration rows per forward pass (gptq, awq).")
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = arg("nf4", "--quant_method bnb --quant_bits 4: the 4-bit type.")
    bnb_4bit_use_double_quant: bool = arg(
        True, "--quant_method bnb --quant_bits 4: quantize the scales too (saves ~0.4 bits per weight)."
    )
    gguf_type: Optional[str] = arg(
        None, f"--quant_method gguf: tensor type of the weights ({', '.join(GGUF_TYPES)}); norms and biases stay "
        "f32. k-quants (q4_k_m, ...) need llama.cpp's llama-quantize on an f16 file."
    )
    to_ollama: bool = arg(
        False, "Also write an Ollama Modelfile (FROM the GGUF, TEMPLATE from the chat template, stop tokens, "
        "parameters); implies --quant_method gguf."
    )

    def __post_init__(self):
        _check(self.quant_bits is None or self.quant_bits in (2, 3, 4, 8),
               f"--quant_bits must be 2, 3, 4 or 8, got {self.quant_bits}")
        _check(self.group_size == -1 or self.group_size > 0, "--group_size must be > 0, or -1 (per channel)")
        _check(self.quant_n_samples > 0, "--quant_n_samples must be > 0")
        _check(self.quant_seqlen > 0, "--quant_seqlen must be > 0")
        _check(self.quant_batch_size > 0, "--quant_batch_size must be > 0")
        if self.gguf_type is not None:
            kind = self.gguf_type.lower()
            _check(kind not in GGUF_LLAMA_CPP_ONLY,
                   f"--gguf_type {self.gguf_type} is a llama.cpp k-/i-quant, which the gguf package cannot write: "
                   f"export --gguf_type f16, then run `llama-quantize model-f16.gguf model-{kind}.gguf {kind.upper()}`")
            _check(kind in GGUF_TYPES, f"--gguf_type must be one of {', '.join(GGUF_TYPES)}, got {self.gguf_type!r}")
            _check(self.quant_method in (None, "gguf"),
                   f"--gguf_type applies to --quant_method gguf, not {self.quant_method}")

    @property
    def method(self) -> str | None:
        """The quantizer selected: --quant_method, or gguf when only --gguf_type / --to_ollama is given."""
        if self.quant_method is not None:
            return self.quant_method
        return "gguf" if (self.gguf_type is not None or self.to_ollama) else None

    @property
    def gguf_kind(self) -> str:
        """The GGUF tensor type: --gguf_type, else q8_0 for --quant_bits 8, q4_0 for 4, f16 without bits."""
        if self.gguf_type is not None:
            return self.gguf_type.lower()
        return {8: "q8_0", 4: "q4_0", None: "f16"}.get(self.quant_bits, "")


@dataclass(frozen=True)
class HubArgs:
    push_to_hub: bool = arg(
        False, "Upload the finished folder (with its generated model card README.md) to ModelScope, or the "
        "Hugging Face hub with --use_hf. Credentials come from the hub client's own login or its token "
        "variable (HF_TOKEN / MODELSCOPE_API_TOKEN)."
    )
    hub_model_id: Optional[str] = arg(None, "--push_to_hub: the repository, owner/name (created when missing).")
    hub_private_repo: bool = arg(False, "--push_to_hub: create the repository private.")
    commit_message: str = arg("Upload model exported by swiftkit", "--push_to_hub: the commit message.")
    hub_endpoint: Optional[str] = arg(
        None, "--push_to_hub: the hub's API address (default: the client's own, e.g. https://huggingface.co or "
        "the HF_ENDPOINT it reads); for a private hub mirror."
    )

    def __post_init__(self):
        _check(not self.push_to_hub or bool(self.hub_model_id),
               "--push_to_hub needs --hub_model_id owner/name")
        _check(self.hub_model_id is None or self.hub_model_id.count("/") == 1,
               f"--hub_model_id must be owner/name, got {self.hub_model_id!r}")
