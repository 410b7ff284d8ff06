"""Field groups of the inference-side commands: adapters, generation, serving, vLLM, data tools (eval's own
flags are in :mod:`swiftkit.config.evaluation`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from swiftkit.config.groups import _check, arg
from swiftkit.config.rlhf import RLHF_TYPES
from swiftkit.core.errors import ConfigError
from swiftkit.core.registry import closest


@dataclass(frozen=True)
class AdapterArgs:
    adapters: list[str] = arg(
        [], "Trained checkpoints (LoRA adapters, or full weights first); the base model and template "
        "are read from their args.json. A run directory means its last checkpoint; an --output_dir holding "
        "runs means the last checkpoint of its newest run (highest v{N})."
    )
    merge_lora: bool = arg(False, "Merge the adapters into the base weights after loading.")


@dataclass(frozen=True)
class GenerationArgs:
    max_new_tokens: int = arg(512, "Maximum tokens generated per reply.")
    temperature: float = arg(0.0, "Sampling temperature; 0 is greedy decoding.")
    top_p: float = arg(1.0, "Nucleus sampling threshold.")
    top_k: int = arg(50, "Top-k sampling.")
    repetition_penalty: float = arg(1.0, "Penalty for repeated tokens (1.0 = none).")
    stream: bool = arg(False, "Print tokens as they are generated (interactive mode).")
    result_path: Optional[str] = arg(
        None, "Batch mode: write one JSON line per --val_dataset row (default next to the adapters)."
    )
    max_batch_size: int = arg(
        16, "Prompts generated together: a batch of --val_dataset rows (infer/eval), or the sequences deploy decodes "
        "at once (requests join and leave between steps).",
    )
    infer_backend: str = arg(
        "transformers",
        "Inference engine, chosen through the swiftkit_get_infer_engine hook (built in: transformers, vllm).",
    )

    def __post_init__(self):
        _check(self.max_new_tokens > 0, "--max_new_tokens must be > 0")
        _check(self.temperature >= 0, "--temperature must be >= 0")
        _check(self.max_batch_size > 0, "--max_batch_size must be > 0")


@dataclass(frozen=True)
class DeployArgs:
    host: str = arg("127.0.0.1", "Address the server listens on (0.0.0.0 for every interface).")
    port: int = arg(8000, "TCP port of the server.")
    api_key: Optional[str] = arg(
        None, "When set, every /v1 request needs the header `Authorization: Bearer <api_key>`. A flag is "
        "visible to other users in `ps`: prefer --api_key_file or the SWIFTKIT_API_KEY environment variable."
    )
    api_key_file: Optional[str] = arg(
        None, "A file whose first line is the API key (instead of --api_key; SWIFTKIT_API_KEY is read when "
        "neither is given)."
    )
    served_model_name: Optional[str] = arg(
        None, "Model id of the base model in the API (default: the last part of --model's name or path)."
    )
    max_model_len: Optional[int] = arg(
        None, "Most tokens a request may use, prompt plus reply (default: the model's max_position_embeddings)."
    )
    max_body_bytes: int = arg(4 * 1024 * 1024, "Largest request body accepted; larger ones get 413.")
    max_json_depth: int = arg(64, "Deepest nesting of a request body's JSON (at most 200); deeper ones get 400.")
    max_request_sequences: int = arg(
        256, "Most sequences one request may generate (prompts x n); more get 400 before any work starts."
    )
    shutdown_timeout: float = arg(
        30.0, "On SIGINT/SIGTERM: seconds the queued and running requests get to finish; those still running "
        "then get 503 (a stream: an error event), new ones get 503 at once."
    )
    batch_wait_ms: float = arg(
        5.0, "How long the scheduler waits for more requests to fill a batch (up to --max_batch_size rows)."
    )

    def __post_init__(self):
        _check(0 < self.port < 65536, f"--port must be between 1 and 65535, got {self.port}")
        _check(self.max_model_len is None or self.max_model_len > 0, "--max_model_len must be > 0")
        _check(self.max_body_bytes > 0, "--max_body_bytes must be > 0")
        _check(self.batch_wait_ms >= 0, "--batch_wait_ms must be >= 0")
        _check(self.api_key is None or bool(self.api_key), "--api_key must not be empty")
        _check(not (self.api_key and self.api_key_file), "give --api_key or --api_key_file, not both")
        _check(1 <= self.max_json_depth <= 200, f"--max_json_depth must be 1-200, got {self.max_json_depth}")
        _check(self.max_request_sequences >= 1, "--max_request_sequences must be >= 1")
        _check(self.shutdown_timeout >= 0, "--shutdown_timeout must be >= 0")


@dataclass(frozen=True)
class RolloutServerArgs:
    """`swiftkit rollout`: where the rollout server listens and what generates its replies."""

    infer_backend: str = arg(
        "vllm", "What generates the rollouts: vllm (needs swiftkit[vllm] and a CUDA GPU), transformers (any "
        "machine, the CPU included) or a plugin's engine (swiftkit_get_infer_engine) that meets the RolloutEngine "
        "protocol.",
    )
    host: str = arg("127.0.0.1", "Address the server listens on. Anyone who reaches it can replace the model's "
                    "weights (/update_weights): keep it on a private network.")
    port: int = arg(8000, "TCP port of the server.")
    max_model_len: Optional[int] = arg(
        None, "Most tokens a prompt plus its reply may use (default: the model's max_position_embeddings); with "
        "vllm also the context vLLM plans its cache for, unless --vllm_max_model_len is given.",
    )
    max_batch_size: int = arg(
        64, "--infer_backend transformers: most sequences (prompts x n) generated together; a larger request is "
        "generated in batches of this many.",
    )

    def __post_init__(self):
        _check(0 < self.port < 65536, f"--port must be between 1 and 65535, got {self.port}")
        _check(bool(self.host), "--host must not be empty")
        _check(self.max_model_len is None or self.max_model_len > 0, "--max_model_len must be > 0")
        _check(self.max_batch_size > 0, "--max_batch_size must be > 0")


@dataclass(frozen=True)
class DataToolArgs:
    max_problems: int = arg(50, "`data lint`: problems printed (all are counted).")
    index: int = arg(0, "`data preview`: which usable row (after loading and sampling) to show.")
    show_tokens: bool = arg(False, "`data preview`: also print one line per token (id, text, trained or not).")
    pretrain: bool = arg(False, "Treat --dataset as pretraining text (rows with 'text'), as `swiftkit pt` does.")
    rlhf_type: Optional[str] = arg(
        None, "`data lint`: check --dataset as `swiftkit rlhf --rlhf_type X` reads it (pairs for dpo/orpo/simpo/"
        "cpo/rm, labelled replies for kto, prompts for ppo/grpo); with --model, both replies of a pair are encoded."
    )

    def __post_init__(self):
        _check(self.max_problems >= 0, "--max_problems must be >= 0")
        _check(self.index >= 0, "--index must be >= 0")
        _check(self.rlhf_type is None or self.rlhf_type in RLHF_TYPES,
               f"unknown --rlhf_type {self.rlhf_type!r}{closest(str(self.rlhf_type), RLHF_TYPES)}; valid: "
               f"{', '.join(RLHF_TYPES)}")
        _check(not (self.pretrain and self.rlhf_type), "--pretrain and --rlhf_type exclude each other")


VLLM_MISSING = "--infer_backend vllm needs the vllm package: pip install 'swiftkit[vllm]' (GPU machines only)"


@dataclass(frozen=True)
class VllmArgs:
    """Settings of the vLLM engine (``--infer_backend vllm``); the transformers engine ignores them."""

    tensor_parallel_size: int = arg(1, "--infer_backend vllm: GPUs the model is split across (tensor parallel). "
                                    "Alias: --vllm_tensor_parallel_size.", aliases=("vllm_tensor_parallel_size",))
    gpu_memory_utilization: float = arg(
        0.9, "--infer_backend vllm: fraction of each GPU's memory vLLM may take (weights plus KV cache). "
        "Alias: --vllm_gpu_memory_utilization.", aliases=("vllm_gpu_memory_utilization",),
    )
    vllm_max_model_len: Optional[int] = arg(
        None, "--infer_backend vllm: context length (prompt plus reply) vLLM plans its KV cache for "
        "(default: the model's own)."
    )
    vllm_max_lora_rank: int = arg(64, "--infer_backend vllm: the largest LoRA rank an adapter may have.")

    def __post_init__(self):
        _check(self.tensor_parallel_size >= 1, "--tensor_parallel_size must be >= 1")
        _check(0 < self.gpu_memory_utilization <= 1, "--gpu_memory_utilization must be in (0, 1]")
        _check(self.vllm_max_model_len is None or self.vllm_max_model_len > 0, "--vllm_max_model_len must be > 0")
        _check(self.vllm_max_lora_rank >= 1, "--vllm_max_lora_rank must be >= 1")


def named_adapters(entries: list[str]) -> list[tuple[str, str]]:
    """``(name, path)`` per ``--adapters`` entry of `deploy`: ``NAME=PATH``, or ``PATH`` named after
    its folder (an existing path containing ``=`` is a path)."""
    out: list[tuple[str, str]] = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or Path(entry).exists():
            name, path = Path(entry.rstrip("/")).name, entry
        if not name or not path:
            raise ConfigError(f"--adapters {entry!r}: expected NAME=PATH or PATH")
        if name in (n for n, _ in out):
            raise ConfigError(f"--adapters: the name {name!r} is given twice; use NAME=PATH to tell them apart")
        out.append((name, path))
    return out
