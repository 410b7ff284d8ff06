"""The plugin module named by the ``swiftkit`` entry point: answers ``--loss_type focal``.

swiftkit imports this module at start-up, so it stays free of torch imports; the loss itself lives
in :mod:`swiftkit_focal_loss.loss` and is imported only when ``focal`` is selected.
"""

from __future__ import annotations

import swiftkit

LOSS_NAME = "focal"


@swiftkit.hookimpl
def swiftkit_choice_names(kind):
    """Declare the name, so errors and `swiftkit plugins list` show it."""
    return [LOSS_NAME] if kind == "loss" else []


@swiftkit.hookimpl
def swiftkit_get_loss(name, config):
    if name != LOSS_NAME:
        return None
    from swiftkit_focal_loss.loss import focal_loss

    return focal_loss
