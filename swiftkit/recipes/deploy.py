"""The deploy recipe: ``setup()`` loads the base model and every adapter, ``run()`` serves them.

``--adapters NAME=PATH`` serves the LoRA adapter at PATH as model NAME (a bare PATH is served
under its folder name); the base model is served too, as ``--served_model_name`` or the last part
of its name. The first adapter decides the base model, template and system prompt (from its
``args.json``, as ``swiftkit infer`` does); the others are loaded onto the same base, each kept
separate and chosen per request by the request's ``model`` field. With ``--merge_lora`` the one
adapter is merged and served as a single model.
"""

from __future__ import annotations

import sys
from pathlib import Path

from swiftkit.config import DeployConfig
from swiftkit.config.inference import named_adapters
from swiftkit.core.checkpoints import find_checkpoint
from swiftkit.inference.base import InferEngine
from swiftkit.inference.protocol import SamplingDefaults
from swiftkit.inference.scheduler import Scheduler
from swiftkit.recipes.engines import load_engine

FIRST_ADAPTER = "default"  # peft's name for the adapter load_for_inference applies


def _model_label(name: str | None, fallback: str) -> str:
    return Path(str(name).rstrip("/")).name if name else fallback


class DeployRecipe:
    """Load a model with its adapters, then serve them over an OpenAI-compatible API."""

    def __init__(self, config: DeployConfig, host):
        self.config = config
        self.host = host

    def setup(self) -> None:
        cfg = self.config
        named = named_adapters(cfg.adapter.adapters)
        first = [path for _, path in named[:1]] if not cfg.adapter.merge_lora else [p for _, p in named]
        self.engine, self.info = load_engine(cfg, self.host, adapters=first, protocol=InferEngine)
        lora_first = bool(self.info["adapters"]) and not self.info["merged"]
        base = cfg.deploy.served_model_name or _model_label(
            self.info["settings"].get("model") or self.info["model_path"], "base")
        if named and not lora_first and not cfg.deploy.served_model_name:
            base = named[0][0]  # a full-weights checkpoint (or a merged adapter) is the model itself
        self.engine.add_model(base, None)
        if lora_first:
            self.engine.add_model(named[0][0], FIRST_ADAPTER)
        for name, path in named[1:] if not cfg.adapter.merge_lora else []:
            self.engine.load_adapter(name, str(find_checkpoint(path)))
        if cfg.deploy.max_model_len is not None:
            self.engine.max_model_len = cfg.deploy.max_model_len
        g = cfg.generation
        self.defaults = SamplingDefaults(g.max_new_tokens, g.temperature, g.top_p, g.top_k, g.repetition_penalty)
        self.scheduler = Scheduler(self.engine, max_batch_size=g.max_batch_size, max_wait_ms=cfg.deploy.batch_wait_ms)
        print(f"[swiftkit] deploy: serving {', '.join(self.engine.model_names())}", file=sys.stderr)

    def app(self):
        from swiftkit.serving.app import build_app  # defers fastapi

        d = self.config.deploy
        return build_app(self.engine, self.scheduler, defaults=self.defaults, api_key=d.api_key,
                         max_body_bytes=d.max_body_bytes, address=f"http://{d.host}:{d.port}")

    def server(self):
        """A ``uvicorn.Server`` for the app; ``run()`` blocks until SIGINT/SIGTERM or ``should_exit``."""
        import uvicorn  # defers uvicorn

        d = self.config.deploy
        config = uvicorn.Config(self.app(), host=d.host, port=d.port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=30)
        return uvicorn.Server(config)

    def run(self) -> dict:
        self.server().run()
        return {}
