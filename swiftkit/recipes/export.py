"""The export recipe (``swiftkit export`` and ``swiftkit quantize``).

``setup()`` picks the format (``--quant_method``, else ``--export_format``) through the export hook, runs its
check before any weights load, loads the source model (base + adapters as trained) and the calibration /
held-aside rows, and records the parity reference on the source. ``run()`` merges the adapters, hands the
merged model to the format's writer inside a staging folder, loads what was written back through the
normal ``--model`` path and checks it against the reference (parity.json), writes the model card and
export_info.json, and only then moves the folder into place; ``--push_to_hub`` uploads the finished folder.

Before the writer runs, the tokenizer gets the chat template used in training and the model's generation
config gets the template's end-of-turn tokens as ``eos_token_id``, so whatever the format writes chats and
stops the way swiftkit does.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

from swiftkit import __version__
from swiftkit.config import ExportConfig
from swiftkit.core.choices import choose_from
from swiftkit.core.errors import ChoiceError, ConfigError
from swiftkit.core.io import staged_dir, write_json
from swiftkit.exporters.base import ExportSource, as_method, merge_stops
from swiftkit.exporters.calibration import DEFAULT_SAMPLE, calibration_rows
from swiftkit.exporters.hub_push import push_folder
from swiftkit.exporters.model_card import write_model_card
from swiftkit.exporters.parity import check_artifact, raise_for_failures, reference, summary_lines
from swiftkit.exporters.source import load_source, merged_model


def default_output_dir(cfg: ExportConfig, label: str) -> Path:
    """``<first adapter>-<label>`` beside the first ``--adapters`` folder, else ``./<model name>-<label>``."""
    if cfg.adapter.adapters:
        first = Path(cfg.adapter.adapters[0]).expanduser().resolve()
        return first.with_name(f"{first.name}-{label}")
    return Path.cwd() / f"{Path(str(cfg.model.model).rstrip('/')).name}-{label}"


def carry_template(model, template) -> None:
    """The training chat template onto the tokenizer, its end-of-turn tokens into the generation config."""
    template.tokenizer.chat_template = template.chat_template
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.eos_token_id = merge_stops(gen.eos_token_id, template.stop_token_ids)


def _renamed(report: dict, staging: Path, final: Path) -> dict:
    """``report`` naming the folder the artifact ends up in rather than its staging folder."""
    return json.loads(json.dumps(report).replace(json.dumps(str(staging))[1:-1], json.dumps(str(final))[1:-1]))


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class ExportRecipe:
    """Write ``--model`` / ``--adapters`` in ``--export_format`` or quantized with ``--quant_method``."""

    def __init__(self, config: ExportConfig, host):
        self.config = config
        self.host = host

    def setup(self) -> None:
        cfg, host = self.config, self.host
        name = cfg.format_name
        try:
            choice = choose_from(host, "export_format", name, config=cfg)
        except ChoiceError as exc:
            if cfg.quantize.method is None:
                raise
            raise ChoiceError(str(exc).replace("--export_format", "--quant_method")) from None
        self.plugin = choice.plugin
        self.method = as_method(name, choice.value)
        if self.method.check is not None:
            with host.guard(self.plugin, f"export format {name!r}"):
                self.method.check(cfg)  # a missing package or unsupported bit width: before any weights load
        self.label = self.method.artifact_label(cfg)
        out = Path(cfg.export.output_dir).expanduser() if cfg.export.output_dir else default_output_dir(cfg, self.label)
        if out.exists():
            raise ConfigError(f"--output_dir {str(out)!r} already exists; export never overwrites: choose another")
        self.output_dir = out

        self.model, self.template, self.info = load_source(cfg, host.registries)
        wants_rows = self.method.calibration or cfg.export.check_parity
        self.calibration, held = (calibration_rows(cfg, self.template, host.registries,
                                                   need_calibration=self.method.calibration)
                                  if wants_rows else ([], []))
        self.reference = None
        if cfg.export.check_parity:
            self.reference = reference(self.model, self.template, ppl_rows=held,
                                       max_new_tokens=cfg.export.parity_max_new_tokens)

    def _export_info(self, parity) -> dict:
        cfg, info = self.config, self.info
        q = cfg.quantize
        return {
            "export_format": self.method.name,
            "label": self.label,
            "base_model": info["model_path"],
            "base_model_name": info["settings"].get("model"),
            "adapters": info["adapters"],
            "template": info["template"],
            "training_quantization": info.get("training_quantization"),
            "qlora_merge": cfg.export.qlora_merge if info.get("training_quantization") else None,
            "quantization": None if q.method is None else {
                "method": q.method, "bits": q.quant_bits, "group_size": q.group_size,
                "gguf_type": q.gguf_kind if q.method == "gguf" else None,
                "calibration_rows": len(self.calibration) if self.method.calibration else None,
                "calibration_data": (list(cfg.data.dataset) or [DEFAULT_SAMPLE]) if self.method.calibration else None,
            },
            "parity": "parity.json" if parity is not None else "skipped (--check_parity false)",
            "swiftkit_version": __version__,
        }

    def run(self) -> dict:
        cfg, out = self.config, self.output_dir
        quant = self.info.get("training_quantization")
        model = merged_model(cfg, self.host.registries, self.model, quant)
        self.model = None
        gc.collect()
        model.eval()
        carry_template(model, self.template)
        source = ExportSource(model=model, tokenizer=self.template.tokenizer, template=self.template, config=cfg,
                              calibration=self.calibration if self.method.calibration else None, info=self.info)
        out.parent.mkdir(parents=True, exist_ok=True)
        parity = None
        try:
            with staged_dir(out) as tmp:
                with self.host.guard(self.plugin, f"export format {self.method.name!r}"):
                    self.method.write(source, tmp)
                source.cleanup()
                source.model = model = None  # free the merged weights before the artifact loads back
                gc.collect()
                if self.reference is not None:
                    parity = check_artifact(tmp, self.reference, self.template,
                                            max_new_tokens=cfg.export.parity_max_new_tokens,
                                            torch_dtype=cfg.model.torch_dtype, registry=self.host.registries.models)
                    parity = _renamed(parity, tmp, out)
                    write_json(tmp / "parity.json", parity)
                    for line in summary_lines(parity):
                        print(f"[swiftkit] {line}", file=sys.stderr)
                    raise_for_failures(parity)
                info = self._export_info(parity)
                write_json(tmp / "export_info.json", info)
                write_model_card(tmp, info=info, config=cfg, parity=parity)
        finally:
            source.cleanup()
        size = _folder_size(out)
        print(f"[swiftkit] export: {self.label} model written to {out} ({size / 2**20:.1f} MiB)", file=sys.stderr)
        hub_url = None
        if cfg.hub.push_to_hub:
            hub_url = push_folder(out, cfg)
            print(f"[swiftkit] export: pushed to {hub_url}", file=sys.stderr)
        return {"output_dir": str(out), "export_format": self.method.name, "label": self.label, "parity": parity,
                "size_bytes": size, "hub_url": hub_url}
