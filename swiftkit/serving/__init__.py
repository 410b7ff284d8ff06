"""Serving: the OpenAI-compatible HTTP app (``build_app``) over an inference engine and its scheduler.

The ``deploy`` recipe (:mod:`swiftkit.recipes.deploy`) loads the model and adapters and runs the app; the
``rollout`` recipe runs :mod:`swiftkit.serving.rollout`, the server GRPO trainers generate on.
Importing this package imports neither torch nor fastapi.
"""
