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

from swiftkit.config import ExportConfig
from swiftkit.config.groups import ConfigError


def default_output_dir(cfg: ExportConfig) -> Path:
    first = Path(cfg.adapter.adapters[0]).expanduser().resolve()
    return first.with_name(f"{first.name}-{cfg.export.export_format}")


class ExportRecipe:
    """Export ``--adapters`` (on their base model) in ``--export_format``."""

    def __init__(self, cfg: ExportConfig):
        self.cfg = cfg

    def setup(self) -> None:
        from swiftkit.choices import choose
        from swiftkit.infer.loading import load_for_inference
        from swiftkit.plugins import build_registries, get_plugin_manager

        cfg = self.cfg
        pm = get_plugin_manager(cfg.plugin.plugins, cfg.plugin.disable_plugins)
        self.exporter = choose(pm, "export_format", cfg.export.export_format, config=cfg)
        out = Path(cfg.export.output_dir).expanduser() if cfg.export.output_dir else default_output_dir(cfg)
        if out.exists():
            raise ConfigError(f"--output_dir {str(out)!r} already exists; export never overwrites: choose another")
        self.output_dir = out
        self.model, self.template, self.info = load_for_inference(cfg, registries=build_registries(pm))
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
        from swiftkit import __version__
        from swiftkit.train.output import staged_dir

        cfg, out = self.cfg, self.output_dir
        out.parent.mkdir(parents=True, exist_ok=True)
        with staged_dir(out) as tmp:
            self.exporter(self.model, self.template.tokenizer, tmp, cfg)
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


def run_export(cfg: ExportConfig) -> dict:
    recipe = ExportRecipe(cfg)
    recipe.setup()
    return recipe.run()
