"""The rollout side of the built-in engines (:class:`~swiftkit.inference.base.RolloutEngine`): sampled replies as
token ids, and weights a trainer pushes, loaded in place.

transformers: the replies of a request are generated in left-padded batches under one seed (so a request is
reproducible), each cut after its first stop token; logprobs come from the scores ``generate`` sampled from
(after temperature, top-k and top-p). A pushed adapter becomes the peft adapter :data:`PUSHED` (added the first
time, or when its config changes; later pushes only replace its weights) and is the one generation uses; pushed
``weights`` are copied into the parameters of the same names (a model serving adapters drops them first: full
weights define the model).

vLLM (GPU only, not exercised by the CPU tests): replies come from one ``LLM.generate`` call with ``n`` samples
per prompt; a pushed adapter is written to a folder of the engine and served as a new ``LoRARequest``; pushed
``weights`` are loaded into the running model the way TRL's colocated vLLM does (one process, no tensor
parallelism).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from swiftkit.inference.protocol import MIN_TEMPERATURE
from swiftkit.inference.rollout_protocol import Completion, RolloutProtocolError, cut_at_stop, model_identity

PUSHED = "rollout"  # the peft name of the adapter a trainer pushes
# adapter config keys that do not change what the adapter computes (so a push with another value reuses it)
_CONFIG_IGNORED = ("base_model_name_or_path", "revision", "inference_mode", "init_lora_weights", "runtime_config")


def _stops(engine, request) -> list[int]:
    return list(request.stop_token_ids) if request.stop_token_ids is not None else list(engine.stop_token_ids)


def _rows(request) -> list[list[int]]:
    return [list(prompt) for prompt in request.prompts for _ in range(request.n)]


# -- transformers ---------------------------------------------------------------------------------

def transformers_identity(engine) -> dict:
    model = engine.model
    return model_identity(model.config, engine.template.tokenizer, model.get_input_embeddings().num_embeddings)


def transformers_rollouts(engine, request, batch_size: int | None = None) -> list[Completion]:
    import torch  # defers torch
    from transformers import GenerationConfig  # defers transformers

    stops = _stops(engine, request)
    # Every setting explicit (top_k 0: no cut, repetition_penalty 1: none), as TRL's own generation passes them:
    # values left unset would come from the model's generation_config.json instead.
    settings = dict(max_new_tokens=request.max_tokens, eos_token_id=stops or None, pad_token_id=engine.pad_token_id,
                    do_sample=request.temperature >= MIN_TEMPERATURE, repetition_penalty=request.repetition_penalty,
                    output_scores=request.logprobs, return_dict_in_generate=request.logprobs)
    if settings["do_sample"]:
        settings.update(temperature=request.temperature, top_p=request.top_p, top_k=request.top_k)
    config = GenerationConfig(**settings)
    rows = _rows(request)
    size = batch_size or len(rows)
    replies: list[Completion] = []
    with engine._model_lock, torch.inference_mode():
        if request.seed is not None:
            torch.manual_seed(request.seed)
        for start in range(0, len(rows), size):
            replies += _transformers_batch(engine, rows[start:start + size], config, stops, request.logprobs)
    return replies


def _transformers_batch(engine, rows, config, stops, logprobs: bool) -> list[Completion]:
    import torch  # defers torch

    input_ids, mask = engine._batch(rows)
    result = engine.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    sequences = result.sequences if logprobs else result
    width = input_ids.shape[1]
    replies = []
    for row, ids in enumerate(sequences[:, width:].tolist()):
        kept, reason = cut_at_stop(ids, stops)
        scores = None
        if logprobs:
            scores = [float(torch.log_softmax(result.scores[step][row].float(), dim=-1)[token])
                      for step, token in enumerate(kept)]
        replies.append(Completion(kept, reason, scores))
    return replies


def transformers_update(engine, tensors: dict, metadata: dict) -> None:
    with engine._model_lock:
        if metadata["kind"] == "adapter":
            engine.model = _load_adapter(engine.model, tensors, metadata["adapter_config"])
        else:
            engine.model = _copy_parameters(engine.model, tensors)
        engine.model.eval()


def _comparable(config: dict) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in _CONFIG_IGNORED}, sort_keys=True, default=str)


def _adapter_config(model) -> dict:
    config = model.peft_config[PUSHED].to_dict()
    return json.loads(json.dumps(config, default=lambda v: sorted(v) if isinstance(v, (set, frozenset)) else str(v)))


def _write_adapter(folder: str, tensors: dict, config: dict) -> None:
    from safetensors.torch import save_file  # defers torch

    save_file(tensors, str(Path(folder, "adapter_model.safetensors")))
    Path(folder, "adapter_config.json").write_text(json.dumps({**config, "inference_mode": True}, sort_keys=True))


def _check_keys(expected: set, tensors: dict) -> None:
    missing, unknown = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unknown:
        shown = (f"missing {missing[:3]}" if missing else "") + ("; " if missing and unknown else "") + \
            (f"unknown {unknown[:3]}" if unknown else "")
        raise RolloutProtocolError(f"the pushed adapter does not fit the served model ({shown}): start "
                                   "`swiftkit rollout` with the model the trainer trains")


def _load_adapter(model, tensors: dict, config: dict):
    from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict  # defers peft

    if isinstance(model, PeftModel) and PUSHED in model.peft_config and \
            _comparable(_adapter_config(model)) == _comparable(config):
        _check_keys(set(get_peft_model_state_dict(model, adapter_name=PUSHED)), tensors)
        set_peft_model_state_dict(model, tensors, adapter_name=PUSHED)
        model.set_adapter(PUSHED)
        return model
    previous = model.active_adapter if isinstance(model, PeftModel) else None
    if isinstance(model, PeftModel) and PUSHED in model.peft_config:
        model.delete_adapter(PUSHED)  # pushed with another config: replaced
    with tempfile.TemporaryDirectory(prefix="swiftkit-rollout-") as folder:
        _write_adapter(folder, tensors, config)
        try:
            if isinstance(model, PeftModel):
                model.load_adapter(folder, adapter_name=PUSHED, is_trainable=False)
            else:
                model = PeftModel.from_pretrained(model, folder, adapter_name=PUSHED, is_trainable=False)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise RolloutProtocolError(f"the pushed adapter cannot be loaded: {exc}") from exc
    try:
        _check_keys(set(get_peft_model_state_dict(model, adapter_name=PUSHED)), tensors)
    except RolloutProtocolError:
        model.delete_adapter(PUSHED)
        if previous is not None and previous != PUSHED:
            model.set_adapter(previous)
        raise
    model.set_adapter(PUSHED)
    return model


def _copy_parameters(model, tensors: dict):
    import torch  # defers torch
    from peft import PeftModel  # defers peft

    if isinstance(model, PeftModel):
        model = model.unload()  # full weights define the model: the adapters it served go
    params = dict(model.named_parameters())
    unknown = sorted(name for name in tensors if name not in params)
    wrong = sorted(name for name, t in tensors.items()
                   if name in params and tuple(t.shape) != tuple(params[name].shape))
    if unknown or wrong:
        detail = f"unknown {unknown[:3]}" if unknown else \
            f"{wrong[0]} is {tuple(tensors[wrong[0]].shape)} here {tuple(params[wrong[0]].shape)}"
        raise RolloutProtocolError(f"the pushed weights do not fit the served model ({detail}): start `swiftkit "
                                   "rollout` with the model the trainer trains")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(device=params[name].device, dtype=params[name].dtype))
    return model


# -- vLLM -----------------------------------------------------------------------------------------

def vllm_identity(engine) -> dict:
    hf_config = engine.llm.llm_engine.model_config.hf_config
    return model_identity(hf_config, engine.template.tokenizer)


def vllm_rollouts(engine, request) -> list[Completion]:
    from vllm import SamplingParams as VllmSamplingParams  # defers vllm

    stops = _stops(engine, request)
    greedy = request.temperature < MIN_TEMPERATURE
    sampling = VllmSamplingParams(
        n=request.n, max_tokens=request.max_tokens, temperature=0.0 if greedy else request.temperature,
        top_p=1.0 if greedy else request.top_p, top_k=-1 if greedy or request.top_k <= 0 else request.top_k,
        repetition_penalty=request.repetition_penalty, stop_token_ids=stops, seed=request.seed,
        logprobs=0 if request.logprobs else None)
    lora = engine.rollout_lora if engine.rollout_lora is not None else engine._lora_request(None)
    with engine._model_lock:
        outputs = engine.llm.generate([{"prompt_token_ids": list(p)} for p in request.prompts], sampling,
                                      lora_request=lora, use_tqdm=False)
    replies = []
    for out in outputs:  # in the order of the prompts, n choices each
        for choice in out.outputs:
            ids = list(choice.token_ids)
            if choice.finish_reason == "stop" and isinstance(choice.stop_reason, int) and \
                    (not ids or ids[-1] != choice.stop_reason):
                ids.append(choice.stop_reason)  # a stop token vLLM left out of the reply
            kept, reason = cut_at_stop(ids, stops)
            scores = None
            if request.logprobs and choice.logprobs is not None:
                scores = [step[token].logprob for step, token in zip(choice.logprobs, kept)]
            replies.append(Completion(kept, reason, scores))
    return replies


def vllm_update(engine, tensors: dict, metadata: dict) -> None:
    from vllm.lora.request import LoRARequest  # defers vllm

    with engine._model_lock:
        if metadata["kind"] == "adapter":
            if not engine.lora_enabled:
                raise RolloutProtocolError("this vLLM engine was built without LoRA support")
            if engine.rollout_folder is None:
                engine.rollout_folder = tempfile.TemporaryDirectory(prefix="swiftkit-rollout-lora-")
            engine.rollout_version += 1
            folder = Path(engine.rollout_folder.name, f"v{engine.rollout_version}")
            folder.mkdir()
            _write_adapter(str(folder), tensors, metadata["adapter_config"])
            engine.rollout_lora = LoRARequest(f"{PUSHED}-{engine.rollout_version}", 10_000 + engine.rollout_version,
                                              str(folder))
            shutil.rmtree(folder.with_name(f"v{engine.rollout_version - 1}"), ignore_errors=True)  # never asked again
            return
        try:
            model = engine.llm.llm_engine.model_executor.driver_worker.model_runner.model
        except AttributeError as exc:
            raise RolloutProtocolError("this vLLM version does not expose its model to load pushed weights into "
                                       "(one process, --vllm_tensor_parallel_size 1, is needed)") from exc
        model.load_weights(weights=list(tensors.items()))
        engine.llm.reset_prefix_cache()
