"""What the engines need from a trainer beyond transformers' own set-up (mixed into every swiftkit trainer).

- **--fsdp on CPU ranks.** accelerate turns several CPU processes into a plain data-parallel group
  (``MULTI_CPU``) and leaves its FSDP plugin unused there, while torch's FSDP2 (``fully_shard``) shards
  over gloo on the CPU as well. The trainer's accelerator is switched to FSDP once it is built, so --fsdp
  shards the same way on CPU ranks as on GPUs (and saves the same whole checkpoints).
- **--sequence_parallel_size (DeepSpeed Ulysses).** Ulysses wraps the attention function the model runs
  by its registered name. On the CPU swiftkit runs padding-free batches through its own ``swiftkit_sdpa``
  (:mod:`swiftkit.models.segment_attention`), which splits a row at its position ids; a sequence-parallel
  rank holds a slice of the row, so the model goes back to transformers' ``sdpa``, and Ulysses wraps that.
"""

from __future__ import annotations

from swiftkit.models.segment_attention import NAME as SEGMENT_SDPA


class EngineSetup:
    """A ``transformers.Trainer`` mix-in: the engine adjustments above, made once the accelerator exists."""

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        fsdp_on_cpu(self)
        ulysses_attention(self)


def fsdp_on_cpu(trainer) -> bool:
    """Switch ``trainer``'s accelerator to FSDP when --fsdp was asked for and accelerate chose CPU data
    parallelism (or one CPU process) instead; whether it did."""
    from accelerate.state import PartialState  # defers accelerate
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin  # defers accelerate

    state = trainer.accelerator.state
    plugin_args = getattr(trainer.args, "fsdp_plugin_args", None)
    if plugin_args is None or trainer.is_fsdp_enabled:
        return False
    if state.distributed_type not in (DistributedType.MULTI_CPU, DistributedType.NO) or state.device.type != "cpu":
        return False
    state.fsdp_plugin = FullyShardedDataParallelPlugin(**plugin_args)
    # AcceleratorState copies the process state's type each time it is instantiated: both say FSDP
    PartialState().distributed_type = state.distributed_type = DistributedType.FSDP
    trainer.is_fsdp_enabled = True
    return True


def ulysses_attention(trainer) -> str | None:
    """Under sequence parallelism, the attention implementation Ulysses wraps (the model's, with swiftkit's
    per-segment SDPA replaced by ``sdpa``); None without it."""
    parallel = getattr(trainer.accelerator, "parallelism_config", None)
    if parallel is None or not parallel.sp_enabled or parallel.sp_handler is None:
        return None
    model = trainer.model
    name = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if name == SEGMENT_SDPA:
        model.set_attn_implementation("sdpa")
        name = "sdpa"
    parallel.sp_handler.sp_attn_implementation = name
    return name
