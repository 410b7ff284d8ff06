"""Selecting a part by name through a choice hook, with an error that lists every valid name.

Each choice hook (``swiftkit_get_loss``, ``swiftkit_get_tuner``, ...) is firstresult: the plugin
that owns the selected name answers, the others return ``None``. When nobody answers, the user
needs the names that *would* work; plugins declare them through ``swiftkit_choice_names(kind)``.
:func:`check_name` uses those declarations to reject a typo before any weights load, for parts that
can only be built later (an optimizer needs the model).
"""

from __future__ import annotations

from swiftkit.core.errors import ChoiceError
from swiftkit.core.registry import closest

__all__ = ["CHOICES", "ChoiceError", "Choice", "check_name", "choice_names", "choose", "names_by_plugin"]

# kind -> (choice hook, the flag that selects it)
CHOICES: dict[str, tuple[str, str]] = {
    "tuner": ("swiftkit_get_tuner", "--train_type"),
    "loss": ("swiftkit_get_loss", "--loss_type"),
    "metrics": ("swiftkit_get_metrics", "--metric"),
    "optimizer": ("swiftkit_get_optimizer", "--optimizer"),
    "lr_scheduler": ("swiftkit_get_lr_scheduler", "--lr_scheduler_type"),
    "callback": ("swiftkit_get_callback", "--callbacks"),
    "trainer": ("swiftkit_get_trainer", "--trainer"),
    "infer_engine": ("swiftkit_get_infer_engine", "--infer_backend"),
    "eval_benchmark": ("swiftkit_get_eval_benchmark", "--eval_dataset"),
    "export_format": ("swiftkit_get_export_format", "--export_format"),
}


class Choice:
    """A part a plugin answered with, and who answered: ``value``, ``plugin`` (its name in the host)
    and ``label`` (``plugin 'NAME' (package PKG)``, for errors)."""

    def __init__(self, value, plugin: str, label: str):
        self.value, self.plugin, self.label = value, plugin, label


def choice_names(host, kind: str) -> list[str]:
    """Every name the loaded plugins declare for ``kind``, sorted, without duplicates."""
    if kind not in CHOICES:
        raise KeyError(f"unknown choice kind {kind!r}; known: {', '.join(CHOICES)}")
    names: set[str] = set()
    for _plugin, answer in host.all_answers("swiftkit_choice_names", kind=kind):
        names.update(answer or ())
    return sorted(names)


def names_by_plugin(host) -> dict[str, dict[str, list[str]]]:
    """plugin name -> kind -> the names that plugin declares (empty kinds left out)."""
    out: dict[str, dict[str, list[str]]] = {}
    for kind in CHOICES:
        for plugin, answer in host.all_answers("swiftkit_choice_names", kind=kind):
            if answer:
                out.setdefault(plugin, {})[kind] = sorted(answer)
    return out


def unknown_choice(host, kind: str, name: str) -> ChoiceError:
    """The error for ``name`` selected by ``kind``'s flag when no plugin answered for it."""
    hook, flag = CHOICES[kind]
    valid = choice_names(host, kind)
    if valid:
        listed = ", ".join(valid)
    else:
        impls = [impl.plugin_name for impl in getattr(host.pm.hook, hook).get_hookimpls()]
        listed = "none (no loaded plugin declares any; " + (
            f"implemented by: {', '.join(impls)})" if impls else f"no plugin implements {hook})")
    return ChoiceError(f"unknown {flag} {name!r}{closest(name, valid)}; valid {flag} values: {listed}")


def choose_from(host, kind: str, name: str, **kwargs) -> Choice:
    """Ask ``kind``'s choice hook for ``name``: the answer and the plugin that gave it;
    :class:`ChoiceError` listing the valid names when nobody answers."""
    hook, _ = CHOICES[kind]
    value, plugin = host.first_answer(hook, name=name, **kwargs)
    if value is None:
        raise unknown_choice(host, kind, name)
    return Choice(value, plugin, host.label(plugin))


def choose(host, kind: str, name: str, **kwargs):
    """The part ``kind``'s choice hook answers for ``name`` (see :func:`choose_from`)."""
    return choose_from(host, kind, name, **kwargs).value


def check_name(host, kind: str, name: str) -> None:
    """Fail now, listing the valid names, when no plugin declares ``name`` for ``kind``."""
    if name not in choice_names(host, kind):
        raise unknown_choice(host, kind, name)
