"""Workarounds for upstream libraries, each version-gated and saying when it can go."""

from __future__ import annotations

import warnings


def silence_known_warnings() -> None:
    """Hide upstream warnings that say nothing actionable to a swiftkit user.

    - peft <= 0.21 reads ``model.is_gradient_checkpointing``, which transformers 5.24 deprecates
      (a FutureWarning on every adapter load). Remove once peft uses ``is_activation_checkpointing``.
    """
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
