"""The peak memory of a training run, from its parts, for the device it trains on.

On the CPU the peak is the process's resident memory (what ``peak_rss_mb`` in train_result.json
reports), and these rules, measured on this project's CPU runs, decide it:

- a ``.safetensors`` checkpoint is memory-mapped: weights kept in the file's dtype *are* the file's
  pages, resident once read; weights converted to another dtype are copies, and the file's pages
  stay resident while loading (the loading peak holds both);
- bitsandbytes quantizes each weight as it loads; the unquantized ones (embeddings, norms, head) are
  then copied out of the mapped file (:func:`swiftkit.models.quantization.release_checkpoint_mapping`),
  so after loading only the quantized storage and those copies stay resident (the file's pages count
  while loading);
- glibc's allocator keeps freed blocks of the activations' sizes (its mmap threshold grows to the
  largest block freed, and smaller blocks come from a heap that fragments): the resident memory grows
  by about 1.5x the activations' traced peak (measured 1.36-1.51x for 70 to 1120 tokens), and by
  about 3.5x with gradient checkpointing, whose recomputation allocates and frees each layer's tensors
  again (measured 2.7-4.0x over three 5-step SmolLM2 runs: the heap's layout varies from run to run);
  with ``MALLOC_MMAP_THRESHOLD_=131072`` both are 1.03x.

On CUDA the parts are torch's allocations on the device plus the CUDA context (not measured here).
"""

from __future__ import annotations

from dataclasses import dataclass

CPU_ALLOCATOR_SLACK = 0.5  # extra resident memory per byte of activations on the CPU (glibc)
CPU_ALLOCATOR_SLACK_CHECKPOINTING = 2.5  # the same with gradient checkpointing
CUDA_CONTEXT_BYTES = 512 * 2**20  # CUDA context and kernels: typical, not measured


@dataclass
class WeightsOnDisk:
    """What the checkpoint holds: its size, and whether it is memory-mapped safetensors in the dtype
    the run loads the weights in."""

    bytes: int
    mapped_same_dtype: bool
    measured: bool  # the size comes from the files (else: parameters x the config's dtype)


def cpu_weights(weights: dict, disk: WeightsOnDisk, quant: dict | None) -> tuple[int, int, str]:
    """``(resident while training, resident while loading, how)`` for the CPU. Frozen copies of the
    base (an rlhf reference) are copies in memory whatever the checkpoint."""
    base, new = weights["base"], weights["adapters"] + weights.get("frozen_copies", 0)
    if quant is None and disk.mapped_same_dtype:
        return disk.bytes + new, disk.bytes, "the checkpoint's pages (memory-mapped, same dtype)"
    if quant is not None:
        return base + new, disk.bytes + base, "quantized copies (the checkpoint is read while quantizing)"
    return base + new, disk.bytes + base, "copies converted to --torch_dtype (the checkpoint is read while loading)"


def peak_memory(*, device: str, runtime: int, weights: dict, disk: WeightsOnDisk, quant: dict | None,
                gradients: int, optimizer_states: int, step_workspace: int, trace: dict,
                accumulation: int, checkpointing: bool = False, dequant_workspace: int = 0) -> dict:
    """The estimated peak and its parts (bytes), for ``device`` ("cpu" or "cuda").

    ``trace`` is :func:`~swiftkit.train.estimate_trace.activation_peak`'s result. The training peak
    is the larger of the forward/backward pass (activations and the gradients alive then: all of them
    with gradient accumulation, which keeps earlier micro-batches' gradients) and the optimizer step
    (every gradient and the step's workspace)."""
    if accumulation > 1:
        grads_then, activations = gradients, trace["peak_without_gradients"] + dequant_workspace
    else:
        grads_then, activations = trace["gradients_at_peak"], trace["peak"] - trace["gradients_at_peak"]
        activations += dequant_workspace
    workspace, stage = 0, "forward/backward pass"
    if gradients + step_workspace > grads_then + activations:
        grads_then, activations, workspace, stage = gradients, 0, step_workspace, "optimizer step"
    if device == "cpu":
        resident, loading, how = cpu_weights(weights, disk, quant)
        factor = CPU_ALLOCATOR_SLACK_CHECKPOINTING if checkpointing else CPU_ALLOCATOR_SLACK
        slack = int(factor * (activations + workspace))
        runtime_how = "measured: this process's resident memory with torch, transformers, the tokenizer and data"
        slack_how = (f"glibc keeps freed blocks: +{factor:.0%} of the activations and workspace"
                     + (" (gradient checkpointing frees and reallocates them)" if checkpointing else ""))
    else:
        resident = weights["base"] + weights["adapters"] + weights.get("frozen_copies", 0)
        loading, how = resident, "on the device"
        runtime, slack = CUDA_CONTEXT_BYTES, 0
        runtime_how = "CUDA context and kernels (typical; not measured)"
        slack_how = "not included (torch's caching allocator reserves some more)"
    parts = {"runtime": runtime, "weights": resident, "gradients": grads_then, "optimizer_states": optimizer_states,
             "activations": activations, "optimizer_workspace": workspace, "allocator": slack}
    training = sum(parts.values())
    loading_peak = runtime + loading
    return {
        "device": device,
        "peak_bytes": max(training, loading_peak),
        "training_peak_bytes": training,
        "loading_peak_bytes": loading_peak,
        "peak_stage": "loading the weights" if loading_peak > training else stage,
        "parts": parts,
        "how": {"runtime": runtime_how, "weights": how, "allocator": slack_how,
                "activations": "peak of the forward/backward pass beyond weights and gradients",
                "optimizer_workspace": "temporaries of the optimizer step (torch's multi-tensor Adam: one per "
                                       "trainable parameter)"},
        "gradients_total": gradients,
    }


def analytic_activations(*, layers: int, hidden: int, intermediate: int, tokens: int, logits_tokens: int,
                         vocab: int, itemsize: int, checkpointing: bool) -> int:
    """A rough activation peak for a decoder when tracing is not possible: per layer and token about
    ten hidden-size and four intermediate-size tensors are kept for the backward pass (one layer's
    worth plus each layer's input with gradient checkpointing), and the fp32 logits three times."""
    per_layer = tokens * (10 * hidden + 4 * intermediate) * itemsize
    kept = tokens * hidden * itemsize * layers + per_layer if checkpointing else per_layer * layers
    return kept + 3 * 4 * logits_tokens * vocab
