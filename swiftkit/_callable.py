"""Packages that double as API functions of the same name (``swiftkit.infer``, ``swiftkit.export``).

Importing a subpackage binds it as an attribute of its parent, which would replace the API
function ``swiftkit.<name>`` of the same name; making the package callable keeps
``swiftkit.<name>(...)`` working whichever was bound last.
"""

from __future__ import annotations

import importlib
import sys


class _CallablePackage(type(sys)):
    def __call__(self, *args, **kwargs):
        api = importlib.import_module("swiftkit.api")
        return getattr(api, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Let ``swiftkit.<name>(...)`` call ``swiftkit.api.<name>`` when the package is bound instead."""
    sys.modules[module_name].__class__ = _CallablePackage
