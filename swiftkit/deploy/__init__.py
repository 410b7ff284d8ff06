"""Serving: an OpenAI-compatible HTTP API (``swiftkit deploy``) over the inference engine.

``DeployRecipe(cfg).setup(); .run()`` is ``swiftkit deploy``; ``build_app`` is the FastAPI app.
Importing this package imports neither torch nor fastapi.
"""

from swiftkit.deploy.recipe import DeployRecipe, parse_adapters, run_deploy

__all__ = ["DeployRecipe", "parse_adapters", "run_deploy"]
