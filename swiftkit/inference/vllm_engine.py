"""Generation with vLLM (``--infer_backend vllm``) behind the interface of the transformers engine.

The prompt ids are exactly ``template.encode_prompt(messages, tools=...)`` (the training encoding);
vLLM gets token ids, never text, so its own chat template is never used. Replies stop at
``template.stop_token_ids`` (and at a request's stop strings) and are decoded by the template, as
the transformers engine does, so both engines give the same text for the same tokens. LoRA
adapters stay unmerged: each one is a ``vllm.lora.request.LoRARequest`` chosen per call by its
served model name, several of them over one base model.

vLLM batches and schedules the rows of one ``generate_ids`` call itself. ``stream_ids`` does not
stream token by token: it generates the whole reply, then yields it as one piece (``vllm.LLM`` is
the offline engine; token streaming would need its async engine). vllm is imported only when an
engine is built; without it (or without a CUDA device) building one raises a clear error.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

from swiftkit.config.inference import VLLM_MISSING, named_adapters
from swiftkit.core.checkpoints import find_checkpoint, is_lora_dir
from swiftkit.core.errors import ConfigError
from swiftkit.inference import rollout_ops
from swiftkit.inference.base import (
    PROMPT_LOGPROBS_UNSUPPORTED,
    CodecEngine,
    Generated,
    PromptCodec,
    ServedModels,
    cut_at_stop_string,
)
from swiftkit.inference.protocol import ProtocolError, SamplingParams, sampling


def require_vllm_package() -> None:
    """A :class:`ConfigError` unless vllm is installed (looked up without importing it)."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(VLLM_MISSING)


def require_vllm() -> None:
    """A :class:`ConfigError` unless vllm is installed and a CUDA device is visible."""
    require_vllm_package()
    import torch  # defers torch

    if not torch.cuda.is_available():
        raise ConfigError("--infer_backend vllm needs a CUDA GPU, and none is visible here "
                          "(torch.cuda.is_available() is False); use --infer_backend transformers")


def sampling_kwargs(params: SamplingParams, stop_token_ids: list[int]) -> dict:
    """Keyword arguments of ``vllm.SamplingParams`` for ``params`` (temperature 0 is greedy)."""
    greedy = not sampling(params)
    return {
        "n": 1,
        "max_tokens": params.max_tokens,
        "temperature": 0.0 if greedy else params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "top_k": -1 if greedy or params.top_k <= 0 else params.top_k,  # -1: no top-k cut
        "repetition_penalty": params.repetition_penalty,
        "stop_token_ids": list(stop_token_ids),
        "stop": list(params.stop) or None,
        "seed": params.seed,
    }


class VllmEngine(CodecEngine):
    """Replies from ``vllm.LLM`` for prompts encoded by ``template``; LoRA adapters by name. Meets
    :class:`~swiftkit.inference.base.InferEngine` (without logprobs, of replies or of prompts)."""

    supports_logprobs = False
    supports_prompt_logprobs = False

    def __init__(self, model_path: str, template, *, adapters: dict[str, str] | None = None,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, max_lora_rank: int = 64, max_loras: int | None = None,
                 enable_lora: bool | None = None, tokenizer_path: str | None = None, dtype: str = "auto",
                 trust_remote_code: bool = False, seed: int = 0):
        """``adapters`` maps adapter names to LoRA folders; with exactly one, calls without a model
        name use it (as a model loaded with one adapter does). ``enable_lora`` (default: whether
        ``adapters`` is non-empty) must be True for :meth:`load_adapter` to work later, and
        ``max_loras`` (default: the number of adapters) is how many vLLM keeps on the GPU at once."""
        require_vllm()
        from vllm import LLM  # defers vllm

        adapters = dict(adapters or {})
        lora = bool(adapters) if enable_lora is None else enable_lora
        kwargs = dict(model=str(model_path), tokenizer=str(tokenizer_path or model_path), dtype=dtype,
                      tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                      max_model_len=max_model_len, trust_remote_code=trust_remote_code, seed=seed,
                      enable_lora=lora)
        if lora:
            kwargs.update(max_lora_rank=max_lora_rank, max_loras=max(1, max_loras or len(adapters)))
        self.llm = LLM(**kwargs)
        self.template = template
        self.codec = PromptCodec(template, images=False)
        self.lora_enabled = lora
        self.max_model_len: int | None = max_model_len or _engine_max_len(self.llm)
        self.served = ServedModels()  # model name -> adapter name (None: base model)
        self._loras: dict = {}  # adapter name -> LoRARequest
        self._default_adapter = next(iter(adapters)) if len(adapters) == 1 else None
        self._model_lock = threading.Lock()  # vllm.LLM is not safe to call from two threads at once
        # `swiftkit rollout`: the adapter a trainer pushed last, how many it pushed, the folder they are written to
        self.rollout_lora, self.rollout_version, self.rollout_folder = None, 0, None
        for name, path in adapters.items():
            self._add_lora(name, path)

    # -- served models ---------------------------------------------------------------------------

    def _add_lora(self, adapter: str, path: str) -> None:
        from vllm.lora.request import LoRARequest  # defers vllm

        if not self.lora_enabled:
            raise ConfigError(f"cannot load the LoRA adapter {path!r}: this vLLM engine was built without "
                              "LoRA support (enable_lora=False)")
        if not Path(path, "adapter_config.json").is_file():
            raise ConfigError(f"{path!r} is not a LoRA adapter folder (no adapter_config.json)")
        self._loras[adapter] = LoRARequest(adapter, len(self._loras) + 1, str(path))  # ids start at 1

    def add_model(self, name: str, adapter: str | None = None) -> None:
        """Serve the base model (``adapter`` None) or an adapter given at construction as ``name``."""
        if adapter is not None and adapter not in self._loras:
            raise ValueError(f"no LoRA adapter {adapter!r} is loaded; loaded: {', '.join(self._loras) or 'none'}")
        self.served.add(name, adapter)

    def load_adapter(self, name: str, path: str) -> None:
        """Serve the LoRA adapter at ``path`` as ``name`` (vLLM loads it on first use)."""
        if name in self.served.names:
            raise ValueError(f"model name {name!r} is served twice; give each adapter its own name")
        adapter = f"adapter{len(self._loras)}"  # never clashes with the names given at construction
        self._add_lora(adapter, path)
        self.add_model(name, adapter)

    def _lora_request(self, model: str | None):
        if model is None or not self.served.names:
            return self._loras.get(self._default_adapter) if self._default_adapter else None
        self.check_model(model)
        adapter = self.served.names[model]
        return self._loras[adapter] if adapter is not None else None

    # -- generation ------------------------------------------------------------------------------

    def _finish(self, ids: list[int], vllm_reason: str | None, params: SamplingParams) -> Generated:
        kept = self.codec.until_stop(ids)
        hit_token = len(kept) < len(ids)
        text, hit_string = cut_at_stop_string(self.codec.decode(kept), params.stop)
        stopped = hit_token or hit_string or vllm_reason == "stop"
        return Generated(text, len(kept) + int(hit_token), "stop" if stopped else "length")

    def generate_ids(self, prompts: list[list[int]], params: SamplingParams, model: str | None = None,
                     cancel: threading.Event | None = None) -> list[Generated]:
        """One reply per prompt (token ids), all rows in one ``LLM.generate`` call with ``model``'s adapter."""
        from vllm import SamplingParams as VllmSamplingParams  # defers vllm

        if cancel is not None and cancel.is_set():
            return [Generated("", 0, "stop") for _ in prompts]
        lora = self._lora_request(model)
        sampling = VllmSamplingParams(**sampling_kwargs(params, self.stop_token_ids))
        with self._model_lock:
            outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], sampling,
                                        lora_request=lora, use_tqdm=False)
        replies = []
        for out in outputs:  # in the order of ``prompts``
            first = out.outputs[0]
            replies.append(self._finish(list(first.token_ids), first.finish_reason, params))
        return replies

    def rollout_identity(self) -> dict:
        return rollout_ops.vllm_identity(self)

    def generate_rollouts(self, request, batch_size: int | None = None) -> list:
        """vLLM schedules the rows itself (``batch_size`` is not used)."""
        return rollout_ops.vllm_rollouts(self, request)

    def update_weights(self, tensors: dict, metadata: dict) -> None:
        rollout_ops.vllm_update(self, tensors, metadata)

    def prompt_logprobs(self, prompts: list[list[int]], top: int, model: str | None = None,
                        cancel: threading.Event | None = None) -> list[list[dict]]:
        """Not available: callers check ``supports_prompt_logprobs`` first; this says so if they did not."""
        raise ProtocolError(PROMPT_LOGPROBS_UNSUPPORTED, "logprobs")

    def stream_ids(self, prompt: list[int], params: SamplingParams, model: str | None = None,
                   cancel: threading.Event | None = None):
        """The whole reply as one text piece, then its :class:`Generated` (not token by token)."""
        reply = self.generate_ids([prompt], params, model=model, cancel=cancel)[0]
        if reply.text:
            yield reply.text
        yield reply


def _engine_max_len(llm) -> int | None:
    """The context length vLLM settled on (its model config), when this vLLM version exposes it."""
    config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    return getattr(config, "max_model_len", None)


# -- building the engine from a command's config -------------------------------------------------

def _lora_dirs(config) -> list[Path]:
    """The LoRA folders the recipe applied to the model it loaded, from ``--adapters``."""
    entries = list(config.adapter.adapters)
    if getattr(config, "command", "") == "deploy":
        entries = [path for _, path in named_adapters(entries)][:1]  # the others come via load_adapter
    return [c for c in (find_checkpoint(e) for e in entries) if is_lora_dir(c)]


def _base_path(model) -> str:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    path = getattr(base.config, "name_or_path", None) or getattr(base.config, "_name_or_path", None)
    if not path or not Path(path).is_dir():
        raise ConfigError(f"--infer_backend vllm loads the model from its folder, but the loaded model came from "
                          f"{path!r}, which is not a local folder")
    return str(path)


def engine_from_config(model, template, config) -> VllmEngine:
    """The engine for ``--infer_backend vllm``: the loaded model's folder and the adapters of ``config``.

    The recipes hand over a model they already loaded with transformers; vLLM loads the weights
    itself, so that model is moved off the GPU to leave the memory to vLLM.
    """
    require_vllm()
    loras = _lora_dirs(config)
    merge = config.adapter.merge_lora
    if loras and (merge or (len(loras) > 1 and config.command != "deploy")):
        raise ConfigError("--infer_backend vllm serves one unmerged LoRA adapter per request: drop --merge_lora "
                          "and pass one --adapters entry, or merge first with `swiftkit export` and pass the "
                          "merged folder as --model")
    model_path = _base_path(model) if model is not None else config.model.model
    _release_gpu(model)
    v = config.vllm
    deploy = getattr(config, "deploy", None)
    rollout = config.command == "rollout"  # a trainer pushes its adapter to it: LoRA stays on
    served = config.server if rollout else deploy
    max_len = v.vllm_max_model_len or (served.max_model_len if served is not None else None)
    enable_lora = bool(loras) or rollout or (deploy is not None and bool(config.adapter.adapters) and not merge)
    return VllmEngine(
        model_path, template, adapters={"default": str(loras[0])} if loras else {},
        tensor_parallel_size=v.tensor_parallel_size, gpu_memory_utilization=v.gpu_memory_utilization,
        max_model_len=max_len, max_lora_rank=v.vllm_max_lora_rank,
        max_loras=max(1, len(config.adapter.adapters)) + int(rollout), enable_lora=enable_lora,
        tokenizer_path=getattr(template.tokenizer, "name_or_path", None) or model_path,
        dtype=config.model.torch_dtype, trust_remote_code=config.model.trust_remote_code,
        seed=getattr(getattr(config, "data", None), "data_seed", 0),
    )


def _release_gpu(model) -> None:
    if model is None:
        return
    import torch  # defers torch

    if torch.cuda.is_available():
        model.to("cpu")
        torch.cuda.empty_cache()
