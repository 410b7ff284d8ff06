"""Built-in plugin for export: the formats and quantizers, answered through the public export hook.

``--export_format merged`` and ``--quant_method bnb|torchao|gptq|awq|gguf`` are all names of the
``swiftkit_get_export_format`` hook; a plugin adds a method by answering a name of its own.
"""

from __future__ import annotations

from swiftkit.core.hookspecs import hookimpl
from swiftkit.exporters.formats import merged_method
from swiftkit.exporters.gguf_method import gguf_method
from swiftkit.exporters.quant_bnb import bnb_method
from swiftkit.exporters.quant_gptq import awq_method, gptq_method
from swiftkit.exporters.quant_torchao import torchao_method

BUILTIN_METHODS = {
    "merged": merged_method,
    "bnb": bnb_method,
    "torchao": torchao_method,
    "gptq": gptq_method,
    "awq": awq_method,
    "gguf": gguf_method,
}


@hookimpl
def swiftkit_choice_names(kind):
    return list(BUILTIN_METHODS) if kind == "export_format" else []


@hookimpl
def swiftkit_get_export_format(name, config):
    build = BUILTIN_METHODS.get(name)
    return None if build is None else build()
