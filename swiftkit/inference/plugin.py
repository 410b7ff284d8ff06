"""Built-in plugin for inference: the transformers and vLLM engines, through the public engine hook."""

from __future__ import annotations

from swiftkit.core.hookspecs import hookimpl
from swiftkit.inference.engine import TransformersEngine
from swiftkit.inference.vllm_engine import engine_from_config


@hookimpl
def swiftkit_get_infer_engine(name, model, template, config):
    if name == "transformers":

        return TransformersEngine(model, template)
    if name == "vllm":

        return engine_from_config(model, template, config)
    return None


@hookimpl
def swiftkit_choice_names(kind):
    return ["transformers", "vllm"] if kind == "infer_engine" else []
