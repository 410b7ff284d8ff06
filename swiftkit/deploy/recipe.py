"""The deploy recipe: ``setup()`` loads the base model and every adapter, ``run()`` serves them.

``--adapters NAME=PATH`` serves the LoRA adapter at PATH as model NAME (a bare PATH is served
under its folder name); the base model is served too, as ``--served_model_name`` or the last part
of its name. The first adapter decides the base model, template and system prompt (from its
``args.json``, as ``swiftkit infer`` does); the others are loaded onto the same base, each kept
separate and chosen per request by the request's ``model`` field. With ``--merge_lora`` the one
adapter is merged and served as a single model.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from swiftkit.config.commands import DeployConfig
from swiftkit.config.groups import ConfigError


def parse_adapters(entries: list[str]) -> list[tuple[str, str]]:
    """``(name, path)`` per ``--adapters`` entry: ``NAME=PATH``, or ``PATH`` named after its folder."""
    out: list[tuple[str, str]] = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or Path(entry).exists():
            name, path = Path(entry.rstrip("/")).name, entry
        if not name or not path:
            raise ConfigError(f"--adapters {entry!r}: expected NAME=PATH or PATH")
        if name in (n for n, _ in out):
            raise ConfigError(f"--adapters: the name {name!r} is given twice; use NAME=PATH to tell them apart")
        out.append((name, path))
    return out


def _model_label(name: str | None, fallback: str) -> str:
    return Path(str(name).rstrip("/")).name if name else fallback


class DeployRecipe:
    """Load a model with its adapters, then serve them over an OpenAI-compatible API."""

    def __init__(self, cfg: DeployConfig):
        self.cfg = cfg
        self.info: dict = {}

    def setup(self, pm=None) -> None:
        from swiftkit.choices import check_backend_installed, choose
        from swiftkit.infer.loading import find_checkpoint, load_for_inference
        from swiftkit.infer.protocol import SamplingDefaults
        from swiftkit.infer.scheduler import Scheduler
        from swiftkit.plugins import build_registries, get_plugin_manager

        cfg = self.cfg
        check_backend_installed(cfg.generation.infer_backend)
        named = parse_adapters(cfg.adapter.adapters)
        pm = pm or get_plugin_manager(cfg.plugin.plugins, cfg.plugin.disable_plugins)
        registries = build_registries(pm)
        first = [path for _, path in named[:1]] if not cfg.adapter.merge_lora else [p for _, p in named]
        load_cfg = dataclasses.replace(cfg, adapter=dataclasses.replace(cfg.adapter, adapters=first))
        model, template, self.info = load_for_inference(load_cfg, registries=registries)
        self.engine = choose(pm, "infer_engine", cfg.generation.infer_backend, model=model, template=template,
                             config=cfg)
        for method in ("add_model", "load_adapter", "generate_ids", "stream_ids", "prepare_chat"):
            if not hasattr(self.engine, method):
                raise ConfigError(f"--infer_backend {cfg.generation.infer_backend!r} cannot serve requests: "
                                  f"its engine has no {method}()")
        lora_first = bool(self.info["adapters"]) and not self.info["merged"]
        base = cfg.deploy.served_model_name or _model_label(
            self.info["settings"].get("model") or self.info["model_path"], "base")
        if named and not lora_first and not cfg.deploy.served_model_name:
            base = named[0][0]  # a full-weights checkpoint (or a merged adapter) is the model itself
        self.engine.add_model(base, None)
        if lora_first:
            self.engine.add_model(named[0][0], getattr(model, "active_adapter", "default"))
        for name, path in named[1:] if not cfg.adapter.merge_lora else []:
            self.engine.load_adapter(name, str(find_checkpoint(path)))
        if cfg.deploy.max_model_len is not None:
            self.engine.max_model_len = cfg.deploy.max_model_len
        g = cfg.generation
        self.defaults = SamplingDefaults(g.max_new_tokens, g.temperature, g.top_p, g.top_k, g.repetition_penalty)
        self.scheduler = Scheduler(self.engine, max_batch_size=g.max_batch_size, max_wait_ms=cfg.deploy.batch_wait_ms)
        print(f"[swiftkit] deploy: model {self.info['model_path']}, template {self.info['template']}, "
              f"serving {', '.join(self.engine.model_names())}", file=sys.stderr)

    def app(self):
        from swiftkit.deploy.app import build_app

        d = self.cfg.deploy
        return build_app(self.engine, self.scheduler, defaults=self.defaults, api_key=d.api_key,
                         max_body_bytes=d.max_body_bytes, address=f"http://{d.host}:{d.port}")

    def server(self):
        """A ``uvicorn.Server`` for the app; ``run()`` blocks until SIGINT/SIGTERM or ``should_exit``."""
        import uvicorn

        d = self.cfg.deploy
        config = uvicorn.Config(self.app(), host=d.host, port=d.port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=30)
        return uvicorn.Server(config)

    def run(self) -> None:
        self.server().run()


def run_deploy(cfg: DeployConfig) -> None:
    recipe = DeployRecipe(cfg)
    recipe.setup()
    recipe.run()
