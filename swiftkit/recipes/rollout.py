"""The rollout recipe: ``setup()`` loads the model (and --adapters) into --infer_backend's engine, ``run()`` serves
GRPO and PPO rollouts over HTTP until SIGINT/SIGTERM (:mod:`swiftkit.serving.rollout`).

The model loads as `swiftkit deploy` and `swiftkit infer` load it (:func:`~swiftkit.recipes.engines.load_engine`:
--adapters reads the base model and template from the run's args.json); the engine must meet the
:class:`~swiftkit.inference.base.RolloutEngine` protocol. A trainer then pushes its own weights to it, so the
weights loaded here only matter until the first push.
"""

from __future__ import annotations

import sys
from pathlib import Path

from swiftkit.config import RolloutConfig
from swiftkit.inference.base import RolloutEngine
from swiftkit.recipes.deploy import is_loopback
from swiftkit.recipes.engines import load_engine


class RolloutRecipe:
    """Load a model, then serve rollouts to `swiftkit rlhf --rlhf_type grpo --use_vllm true --vllm_mode server`."""

    def __init__(self, config: RolloutConfig, host):
        self.config = config
        self.host = host

    def setup(self) -> None:
        cfg = self.config
        backend = cfg.server.infer_backend
        self.engine, self.info = load_engine(cfg, self.host, protocol=RolloutEngine, backend=backend)
        if cfg.server.max_model_len is not None:
            self.engine.max_model_len = cfg.server.max_model_len
        name = self.info["settings"].get("model") or self.info["model_path"]
        self.model_name = Path(str(name).rstrip("/")).name or "model"
        self.backend = backend

    def run(self) -> dict:
        from swiftkit.serving.rollout import build_rollout_app, make_rollout_server  # defers fastapi

        s = self.config.server
        if not is_loopback(s.host):
            print(f"[swiftkit] WARNING: rollout listens on {s.host}, reachable from other machines: anyone who can "
                  "reach it can replace the model's weights (/update_weights). Keep it on a private network.",
                  file=sys.stderr, flush=True)
        url_host = f"[{s.host}]" if ":" in s.host else s.host
        app = build_rollout_app(self.engine, model_name=self.model_name, backend=self.backend,
                                batch_size=s.max_batch_size,
                                address=f"http://{url_host}:{s.port}")
        make_rollout_server(app, host=s.host, port=s.port).run()
        return {}
