"""An inference engine (``--infer_backend vllm`` or a plugin's) as an :class:`~swiftkit.evaluate.model.EvalModel`.

Such engines generate; they do not score given text, so log-likelihood benchmarks (multiple choice,
perplexity) say so and name the backend that can, while generative ones run unchanged.
"""

from __future__ import annotations

from swiftkit.evaluate.model import LogprobsUnavailable


class EngineEvalModel:
    def __init__(self, engine, *, name: str, backend: str):
        self.engine, self.name, self.backend = engine, name, backend

    def render(self, messages: list[dict]) -> str | None:
        return None

    def generate(self, conversations: list[list[dict]], **generation) -> list[str]:
        generation.pop("stop", None)  # ReplyEngine.generate stops at the template's end of turn
        return self.engine.generate(conversations, **generation)

    def _refuse(self):
        return LogprobsUnavailable(f"--infer_backend {self.backend} generates replies but does not score given text: "
                                   "log-likelihood benchmarks (multiple choice, perplexity) need --infer_backend "
                                   "transformers, or a card with mode: generate")

    def loglikelihood(self, requests):
        raise self._refuse()

    def rolling_loglikelihood(self, texts):
        raise self._refuse()
