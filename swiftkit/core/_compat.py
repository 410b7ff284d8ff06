"""Workarounds for upstream libraries, each version-gated and saying when it can go."""

from __future__ import annotations

import warnings


def silence_known_warnings() -> None:
    """Hide upstream warnings that say nothing actionable to a swiftkit user.

    - peft <= 0.21 reads ``model.is_gradient_checkpointing``, which transformers 5.24 deprecates
      (a FutureWarning on every adapter load). Remove once peft uses ``is_activation_checkpointing``.
    - TRL 1.16's configs declare ``gradient_checkpointing``, which transformers 5.24 renames
      ``activation_checkpointing`` (a FutureWarning on every `swiftkit rlhf` run, whatever the value).
      Remove once TRL's configs use the new name.
    """
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated", category=FutureWarning)
