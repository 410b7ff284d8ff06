"""The deploy recipe: ``setup()`` loads the base model and every adapter, ``run()`` serves them.

``--adapters NAME=PATH`` serves the LoRA adapter at PATH as model NAME (a bare PATH is served
under its folder name); the base model is served too, as ``--served_model_name`` or the last part
of its name. The first adapter decides the base model, template and system prompt (from its
``args.json``, as ``swiftkit infer`` does); the others are loaded onto the same base, each kept
separate and chosen per request by the request's ``model`` field. With ``--merge_lora`` the one
adapter is merged and served as a single model.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from swiftkit.config import DeployConfig
from swiftkit.config.inference import named_adapters
from swiftkit.core.checkpoints import find_checkpoint
from swiftkit.core.errors import ConfigError
from swiftkit.inference.base import InferEngine
from swiftkit.inference.protocol import SamplingDefaults
from swiftkit.inference.scheduler import Scheduler
from swiftkit.recipes.engines import load_engine

FIRST_ADAPTER = "default"  # peft's name for the adapter load_for_inference applies


API_KEY_ENV = "SWIFTKIT_API_KEY"


def api_key(d) -> str | None:
    """The key from ``--api_key``, else the first line of ``--api_key_file``, else $SWIFTKIT_API_KEY."""
    if d.api_key:
        return d.api_key
    if d.api_key_file:
        try:
            lines = Path(d.api_key_file).expanduser().read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--api_key_file {d.api_key_file!r} cannot be read: {exc}") from exc
        if not lines or not lines[0].strip():
            raise ConfigError(f"--api_key_file {d.api_key_file!r}: the first line is empty; put the key there")
        return lines[0].strip()
    return os.environ.get(API_KEY_ENV) or None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _model_label(name: str | None, fallback: str) -> str:
    return Path(str(name).rstrip("/")).name if name else fallback


class DeployRecipe:
    """Load a model with its adapters, then serve them over an OpenAI-compatible API."""

    def __init__(self, config: DeployConfig, host):
        self.config = config
        self.host = host

    def setup(self) -> None:
        cfg = self.config
        self.api_key = api_key(cfg.deploy)  # a bad --api_key_file fails before the model loads
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
        from swiftkit.serving.app import Limits, build_app  # defers fastapi

        d = self.config.deploy
        key = self.api_key
        if key is None and not is_loopback(d.host):
            print(f"[swiftkit] WARNING: deploy listens on {d.host}, reachable from other machines, with NO API "
                  "KEY: anyone who can reach it can use the model. Set SWIFTKIT_API_KEY or --api_key_file.",
                  file=sys.stderr, flush=True)
        limits = Limits(d.max_body_bytes, d.max_json_depth, d.max_request_sequences)
        return build_app(self.engine, self.scheduler, defaults=self.defaults, api_key=key, limits=limits,
                         address=f"http://{d.host}:{d.port}")

    def server(self):
        """A uvicorn server for the app; ``run()`` blocks until SIGINT/SIGTERM or ``should_exit``, then
        drains for up to ``--shutdown_timeout`` seconds."""
        from swiftkit.serving.app import make_server  # defers fastapi

        d = self.config.deploy
        return make_server(self.app(), self.scheduler, host=d.host, port=d.port, drain_timeout=d.shutdown_timeout)

    def run(self) -> dict:
        self.server().run()
        return {}
