"""The user-error classes: bad flags, files, data, models or plugins, as opposed to bugs.

Every error a user can fix derives from :class:`SwiftkitError`. The CLI prints such an error as one
line (``swiftkit CMD: error: MESSAGE``) and exits with status 2; ``--debug`` adds the traceback.
Anything else is a bug and keeps its traceback. Each stage defines its own subclass (``DatasetError``
in ``swiftkit.data``, ``TemplateError`` in ``swiftkit.templates``, ...); the ones every layer needs
live here.
"""

from __future__ import annotations


class SwiftkitError(Exception):
    """Input swiftkit cannot use; the message names what is wrong, where, and what to do."""


class ConfigError(SwiftkitError, ValueError):
    """A config value is invalid; the message names the flag."""


class RegistryError(SwiftkitError, ValueError):
    """A registry lookup or registration failed; the message says what and where."""


class PluginError(SwiftkitError):
    """A plugin could not be loaded, is invalid, or failed; the message names the plugin and package."""


class ChoiceError(SwiftkitError, ValueError):
    """A name selected by a flag that no loaded plugin provides; the message lists the valid ones."""
