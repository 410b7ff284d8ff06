"""EvalSettings (what decides a benchmark's scores besides its card and the model) from a command's config:
`swiftkit eval`'s flags, or the benchmarks an sft/rlhf run scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EvalSettings:
    """What decides a benchmark's scores besides its card and the model."""

    limit: int | None = None
    few_shot: int | None = None
    chat: bool | None = None  # render log-likelihood prompts with the chat template (None: when the model can)
    batch_size: int = 8
    generation: dict = field(default_factory=dict)  # temperature, top_p, ...
    max_new_tokens: int | None = None  # caps every reply (None: each card's own max_new_tokens)
    overrides: dict = field(default_factory=dict)  # --eval_dataset_args for this benchmark: subsets, split, few_shot
    allow_code_execution: bool = False
    code_timeout: float = 10.0
    code_memory_mb: int = 1024
    num_samples: int = 1
    use_hf: bool = False
    hub_cache_dir: str | None = None
    cache_dir: Path | None = None  # per-item result cache (None: no cache)
    model_key: str = ""  # the evaluated weights' fingerprint (part of the cache key: retrained weights rescore)
    progress: bool = True

    def score_key(self) -> dict:
        """The settings that change per-item results (the cache key's share)."""
        kept = asdict(self)
        for name in ("limit", "batch_size", "cache_dir", "progress", "hub_cache_dir"):
            kept.pop(name)
        return kept


def _sampling(g) -> dict:
    return {"temperature": g.temperature, "top_p": g.top_p, "top_k": g.top_k,
            "repetition_penalty": g.repetition_penalty}


def settings_from_eval_config(cfg, name: str, *, progress: bool = True, model_key: str = "") -> EvalSettings:
    """`swiftkit eval`'s settings for benchmark ``name`` (``model_key``: see :attr:`EvalSettings.model_key`)."""
    e = cfg.eval
    return EvalSettings(
        limit=e.eval_limit, few_shot=e.eval_few_shot, chat=e.eval_chat_template,
        batch_size=cfg.generation.max_batch_size, generation=_sampling(cfg.generation),
        max_new_tokens=cfg.generation.max_new_tokens if cfg.is_given("max_new_tokens") else None,
        overrides=e.dataset_args().get(name, {}), allow_code_execution=e.allow_code_execution,
        code_timeout=e.eval_code_timeout, code_memory_mb=e.eval_code_memory_mb, num_samples=e.eval_num_samples,
        use_hf=cfg.model.use_hf, hub_cache_dir=cfg.model.cache_dir,
        cache_dir=Path(e.eval_output_dir) / "cache" if e.eval_cache else None, progress=progress,
        model_key=model_key,
    )


def settings_for_training(cfg) -> EvalSettings:
    """The settings of ``--eval_benchmarks`` in an sft/rlhf run: greedy, no cache (the model changes
    between evaluations), no progress bar (the trainer's own is on screen)."""
    b = cfg.bench
    return EvalSettings(limit=b.eval_limit, few_shot=b.eval_few_shot, chat=None,
                        batch_size=cfg.training.per_device_eval_batch_size, generation={"temperature": 0.0},
                        use_hf=cfg.model.use_hf, hub_cache_dir=cfg.model.cache_dir, cache_dir=None, progress=False)
