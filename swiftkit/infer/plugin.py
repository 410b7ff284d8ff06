"""Built-in plugin for inference: the transformers engine, through the public engine hook."""

from __future__ import annotations

from swiftkit import hookimpl


@hookimpl
def swiftkit_get_infer_engine(name, model, template, config):
    if name != "transformers":
        return None
    from swiftkit.infer.engine import TransformersEngine

    return TransformersEngine(model, template)


@hookimpl
def swiftkit_choice_names(kind):
    return ["transformers"] if kind == "infer_engine" else []
