"""The export recipe: ``setup()`` checks the format and output folder, loads model + template;
``run()`` calls the exporter into a temporary folder and moves it into place when it succeeds.

Before the exporter runs, the tokenizer gets the chat template used in training and the model's
generation config gets the template's end-of-turn tokens as ``eos_token_id``, so whatever the
format writes chats and stops the way swiftkit does. ``export_info.json`` records where the
weights came from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from swiftkit import __version__
from swiftkit.config import ExportConfig
from swiftkit.core.choices import choose_from
from swiftkit.core.errors import ConfigError
from swiftkit.core.io import staged_dir
from swiftkit.inference.loading import load_for_inference


def default_output_dir(cfg: ExportConfig) -> Path:
    """``<first adapter>-<format>`` beside the first ``--adapters`` folder."""
    first = Path(cfg.adapter.adapters[0]).expanduser().resolve()
    return first.with_name(f"{first.name}-{cfg.export.export_format}")


class ExportRecipe:
    """Export ``--adapters`` (on their base model) in ``--export_format``."""

    def __init__(self, config: ExportConfig, host):
        self.config = config
        self.host = host

    def setup(self) -> None:
        cfg, host = self.config, self.host
        self.exporter = choose_from(host, "export_format", cfg.export.export_format, config=cfg)
        out = Path(cfg.export.output_dir).expanduser() if cfg.export.output_dir else default_output_dir(cfg)
        if out.exists():
            raise ConfigError(f"--output_dir {str(out)!r} already exists; export never overwrites: choose another")
        self.output_dir = out
        self.model, self.template, self.info = load_for_inference(cfg, registries=host.registries)
        self._carry_template()

    def _carry_template(self) -> None:
        tokenizer = self.template.tokenizer
        tokenizer.chat_template = self.template.chat_template
        gen = getattr(self.model, "generation_config", None)
        if gen is None:
            return
        eos = gen.eos_token_id
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        stops = [*eos, *(i for i in self.template.stop_token_ids if i not in eos)]
        gen.eos_token_id = stops[0] if len(stops) == 1 else stops

    def run(self) -> dict:
        cfg, out = self.config, self.output_dir
        out.parent.mkdir(parents=True, exist_ok=True)
        with staged_dir(out) as tmp:
            with self.host.guard(self.exporter.plugin, f"export format {cfg.export.export_format!r}"):
                self.exporter.value(self.model, self.template.tokenizer, tmp, cfg)
            info = {
                "export_format": cfg.export.export_format,
                "base_model": self.info["model_path"],
                "adapters": self.info["adapters"],
                "template": self.info["template"],
                "swiftkit_version": __version__,
            }
            (tmp / "export_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        print(f"[swiftkit] export: {cfg.export.export_format} model written to {out}", file=sys.stderr)
        return {"output_dir": str(out), "export_format": cfg.export.export_format}

