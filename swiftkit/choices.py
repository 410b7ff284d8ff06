"""Selecting a part by name through a choice hook, with an error that lists every valid name.

Each choice hook (``swiftkit_get_loss``, ``swiftkit_get_tuner``, ...) is firstresult: the plugin
that owns the selected name answers, the others return ``None``. When nobody answers, the user
needs the names that *would* work; plugins declare them through ``swiftkit_choice_names(kind)``.
No heavy imports here: the CLI imports this module at start-up for its error class.
"""

from __future__ import annotations

from swiftkit.registry import closest

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


class ChoiceError(ValueError):
    """A name selected by a flag that no loaded plugin provides; the message lists the valid ones."""


def choice_names(pm, kind: str) -> list[str]:
    """Every name the loaded plugins declare for ``kind``, sorted, without duplicates."""
    if kind not in CHOICES:
        raise KeyError(f"unknown choice kind {kind!r}; known: {', '.join(CHOICES)}")
    names: set[str] = set()
    for answer in pm.hook.swiftkit_choice_names(kind=kind):
        names.update(answer or ())
    return sorted(names)


def names_by_plugin(pm) -> dict[str, dict[str, list[str]]]:
    """plugin name -> kind -> the names that plugin declares (empty kinds left out)."""
    out: dict[str, dict[str, list[str]]] = {}
    for impl in pm.hook.swiftkit_choice_names.get_hookimpls():
        declared = {kind: sorted(impl.function(kind=kind) or ()) for kind in CHOICES}
        out[impl.plugin_name] = {kind: names for kind, names in declared.items() if names}
    return out


def unknown_choice(pm, kind: str, name: str) -> ChoiceError:
    """The error for ``name`` selected by ``kind``'s flag when no plugin answered for it."""
    hook, flag = CHOICES[kind]
    valid = choice_names(pm, kind)
    listed = ", ".join(valid) if valid else f"none (no loaded plugin declares any; {_implementers(pm, hook)})"
    return ChoiceError(f"unknown {flag} {name!r}{closest(name, valid)}; valid {flag} values: {listed}")


def _implementers(pm, hook: str) -> str:
    names = [impl.plugin_name for impl in getattr(pm.hook, hook).get_hookimpls()]
    return f"implemented by: {', '.join(names)}" if names else f"no plugin implements {hook}"


def choose(pm, kind: str, name: str, **kwargs):
    """Call ``kind``'s choice hook for ``name``; :class:`ChoiceError` listing valid names if unanswered."""
    hook, _ = CHOICES[kind]
    result = getattr(pm.hook, hook)(name=name, **kwargs)
    if result is None:
        raise unknown_choice(pm, kind, name)
    return result


def check_backend_installed(backend: str) -> None:
    """Fail before any weights load when ``--infer_backend`` names an optional engine whose package
    is missing (looked up without importing it)."""
    import importlib.util

    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        from swiftkit.config.groups import VLLM_MISSING

        raise ChoiceError(VLLM_MISSING)
