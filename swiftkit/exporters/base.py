"""What an export format or quantizer is, and what it is handed.

The ``swiftkit_get_export_format`` hook answers ``--export_format`` and ``--quant_method`` names with an
:class:`ExportMethod` (or, as before, a bare ``export(model, tokenizer, output_dir, config)`` callable, which
:func:`as_method` wraps). The export recipe

1. calls ``method.check(config)`` before any weights load (a missing package or unsupported bit width is one
   line naming the install hint);
2. loads the source model (base + adapters), records the parity reference, merges the adapters;
3. builds an :class:`ExportSource` (the merged full-precision model, the tokenizer with the training chat
   template, the template, calibration rows when ``method.calibration``) and calls
   ``method.write(source, folder)`` with a fresh folder that is moved into place only when everything
   succeeded;
4. loads the written folder back through the normal ``--model`` path and checks parity.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftkit.core.errors import SwiftkitError
from swiftkit.models.quantization import is_quantized


class ExportError(SwiftkitError):
    """An export that cannot be done as asked; the message names the flag or file."""


@dataclass(frozen=True)
class ExportMethod:
    """An export format or quantization method.

    ``write(source, output_dir)`` writes the artifact's files into ``output_dir`` (an empty folder).
    ``check(config)`` runs before any weights load and raises :class:`~swiftkit.core.errors.SwiftkitError`
    for what cannot work (package missing, bits not supported); None checks nothing.
    ``calibration``: the method needs calibration rows (:attr:`ExportSource.calibration`).
    ``label(config)`` names the artifact for the default output folder and the model card, e.g. ``torchao-int8``;
    None uses the method's name.
    """

    name: str
    write: Callable[[ExportSource, Path], None]
    check: Callable[[Any], None] | None = None
    calibration: bool = False
    label: Callable[[Any], str] | None = None
    description: str = ""

    def artifact_label(self, config) -> str:
        return self.label(config) if self.label is not None else self.name


def as_method(name: str, answer) -> ExportMethod:
    """The hook's answer as an :class:`ExportMethod`: a bare ``export(model, tokenizer, output_dir, config)``
    callable (the original form of the hook) gets the merged model and the tokenizer."""
    if isinstance(answer, ExportMethod):
        return answer
    if not callable(answer):
        raise TypeError(f"export format {name!r}: the hook returned {type(answer).__name__}, not an ExportMethod "
                        "or a callable")

    def write(source: ExportSource, output_dir: Path) -> None:
        answer(source.model, source.tokenizer, output_dir, source.config)

    return ExportMethod(name=name, write=write)


def require_full_precision(source: ExportSource, does: str) -> None:
    """Refuse a model that arrives quantized (its config has a quantization_config): writing or re-quantizing
    its rounded weights would pass them off as the original. ``does`` names the method and what it does with
    the weights, e.g. ``--export_format merged writes``."""
    if is_quantized(source.model):
        name = getattr(source.model.config, "_name_or_path", "")
        raise ExportError(f"{does} full-precision weights, but the model {name!r} is loaded quantized (its config "
                          "has a quantization_config): export from its full-precision original with --model <its "
                          "folder>")


def merge_stops(eos, stop_ids) -> int | list[int] | None:
    """A generation config's ``eos_token_id`` (an id, a list or None) with the template's end-of-turn ids
    added after it: one id stays an int, several make a list."""
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    stops = [*eos, *(i for i in stop_ids or [] if i not in eos)]
    return None if not stops else (stops[0] if len(stops) == 1 else stops)


@dataclass
class ExportSource:
    """The model an exporter writes, and what it needs to write it.

    ``model``: a plain transformers model in full precision with every adapter merged, in eval mode; its
    ``generation_config.eos_token_id`` lists the template's end-of-turn tokens.
    ``tokenizer``: carries the chat template used in training (``tokenizer.chat_template``).
    ``template``: the swiftkit :class:`~swiftkit.templates.template.Template` (``stop_token_ids``, ``system``,
    ``max_length``, ``encode``).
    ``calibration``: for a method with ``calibration=True``, a list of ``{"input_ids": [...],
    "attention_mask": [...]}`` rows encoded by the template from --dataset; otherwise None.
    ``info``: where the weights came from (base model path, adapters, template name).
    """

    model: Any
    tokenizer: Any
    template: Any
    config: Any
    calibration: list[dict] | None = None
    info: dict = field(default_factory=dict)
    _scratch: Path | None = field(default=None, repr=False)

    def save_tokenizer(self, output_dir) -> None:
        """The tokenizer (and chat template) into ``output_dir``; a vision-language model's processor too (its
        image settings), so the folder loads with ``AutoProcessor``."""
        processor = getattr(self.template, "processor", None)
        if processor is not None:
            processor.save_pretrained(output_dir)
        self.tokenizer.save_pretrained(output_dir)  # the run's own tokenizer files win

    def merged_dir(self) -> Path:
        """The merged model saved as a plain transformers folder (weights, config, generation config,
        tokenizer), written once into a scratch folder; for methods that quantize while loading from disk."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="swiftkit-merged-"))
            self.model.save_pretrained(self._scratch, safe_serialization=True)
            self.save_tokenizer(self._scratch)
        return self._scratch

    def generation_config(self):
        """A copy of the model's generation config whose ``eos_token_id`` includes the template's end-of-turn
        tokens (None when the model has none): what every artifact saves."""
        generation = getattr(self.model, "generation_config", None)
        if generation is None:
            return None
        generation = copy.deepcopy(generation)
        generation.eos_token_id = merge_stops(generation.eos_token_id, getattr(self.template, "stop_token_ids", ()))
        return generation

    def cleanup(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
