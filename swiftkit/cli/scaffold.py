"""Generate a new plugin distribution: ``swiftkit plugins new NAME [--dir PARENT] [--hook KIND]``.

Writes ``PARENT/swiftkit-NAME/``: a setuptools ``pyproject.toml`` declaring the ``swiftkit`` entry
point, a package ``swiftkit_NAME`` whose ``plugin.py`` implements one hook with a small working
example, its own tests and a README. The files are rendered from ``swiftkit/scaffold_template/``
with :class:`string.Template` (``$name`` placeholders), so no templating library is needed.

The directory is built in a temporary folder next to the target and renamed into place at the end:
an existing target is never touched, and a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import tempfile
from dataclasses import dataclass
from pathlib import Path

from swiftkit.core.errors import SwiftkitError

TEMPLATE_DIR = Path(__file__).resolve().parent / "scaffold_template"

# An ASCII identifier after lowercasing and '-' -> '_'; starts with a letter so the name is also a
# valid registered template name.
_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


class ScaffoldError(SwiftkitError, ValueError):
    """The plugin cannot be generated (bad name, target exists); nothing was written."""


@dataclass(frozen=True)
class HookKind:
    """What a generated plugin implements and how a user selects it."""

    hook: str
    summary: str
    usage: str  # how to select it on the command line; "$name" is replaced
    dependencies: tuple[str, ...]


HOOK_KINDS: dict[str, HookKind] = {
    "loss": HookKind(
        "swiftkit_get_loss",
        "causal-LM cross-entropy loss selected with `--loss_type $name`",
        "swiftkit sft --model MODEL --dataset DATA --loss_type $name",
        ("swiftkit", "torch"),
    ),
    "callback": HookKind(
        "swiftkit_get_callback",
        "trainer callback selected with `--callbacks $name` (writes every log to a jsonl file)",
        "swiftkit sft --model MODEL --dataset DATA --callbacks $name",
        ("swiftkit", "transformers"),
    ),
    "template": HookKind(
        "swiftkit_register_templates",
        "chat template registered as `$name` (`--template $name`)",
        "swiftkit sft --model MODEL --dataset DATA --template $name",
        ("swiftkit",),
    ),
}


@dataclass(frozen=True)
class PluginNames:
    """The names derived from the NAME a user gives."""

    name: str  # what users select: --loss_type NAME, --callbacks NAME, --template NAME
    ident: str  # NAME as a Python identifier; also the entry-point name
    package: str  # swiftkit_<ident>
    dist: str  # swiftkit-<name>, the distribution and folder name


def plugin_names(name: str) -> PluginNames:
    """Derive the package, distribution and entry-point names from ``name``; bad names raise."""
    if not isinstance(name, str) or not name.strip():
        raise ScaffoldError("plugin name is empty; give one such as 'my-loss'")
    lowered = name.strip().lower()
    ident = lowered.replace("-", "_")
    if not _IDENT.match(ident):
        raise ScaffoldError(
            f"plugin name {name!r} is not usable: lowercased with '-' replaced by '_' it is "
            f"{ident!r}, which must be a Python identifier of ASCII letters, digits and '_' "
            f"starting with a letter (e.g. 'my-loss')"
        )
    return PluginNames(lowered, ident, package=f"swiftkit_{ident}", dist=f"swiftkit-{lowered}")


def usage(name: str, hook: str = "loss") -> str:
    """The command line that selects the generated plugin, e.g. ``swiftkit sft ... --loss_type NAME``."""
    return string.Template(HOOK_KINDS[hook].usage).substitute(name=plugin_names(name).name)


def _render(relpath: str, values: dict[str, str]) -> str:
    source = (TEMPLATE_DIR / relpath).read_text(encoding="utf-8")
    return string.Template(source).substitute(values).rstrip("\n") + "\n"


def render_files(name: str, hook: str = "loss") -> dict[str, str]:
    """``{relative path: text}`` of every file of the plugin distribution for ``name``."""
    if hook not in HOOK_KINDS:
        raise ScaffoldError(f"unknown hook kind {hook!r}; choose one of {', '.join(HOOK_KINDS)}")
    names = plugin_names(name)
    kind = HOOK_KINDS[hook]
    values = {
        "name": names.name,
        "ident": names.ident,
        "package": names.package,
        "dist": names.dist,
        "hook": kind.hook,
    }
    values["summary"] = string.Template(kind.summary).substitute(values)
    values["usage"] = usage(name, hook)
    values["dependencies"] = ", ".join(f'"{dep}"' for dep in kind.dependencies)
    values["common_tests"] = _render("common_tests.py.tmpl", values)
    return {
        "pyproject.toml": _render("pyproject.toml.tmpl", values),
        "README.md": _render("README.md.tmpl", values),
        f"{names.package}/__init__.py": _render("__init__.py.tmpl", values),
        f"{names.package}/plugin.py": _render(f"{hook}/plugin.py.tmpl", values),
        "tests/test_plugin.py": _render(f"{hook}/test_plugin.py.tmpl", values),
    }


def scaffold_plugin(name: str, parent: str | Path = ".", hook: str = "loss") -> Path:
    """Write the plugin distribution ``parent/swiftkit-NAME/`` and return its path.

    Raises :class:`ScaffoldError` (nothing written) when the name is not usable, the hook kind is
    unknown or the target already exists.
    """
    files = render_files(name, hook)
    parent = Path(parent)
    target = parent / plugin_names(name).dist
    if target.exists() or target.is_symlink():
        raise ScaffoldError(_exists_message(target))
    if parent.exists() and not parent.is_dir():
        raise ScaffoldError(f"{parent} is not a directory; cannot create the plugin in it")
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        for rel, text in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0700; give it a normal folder's mode
        if target.exists():  # appeared while we were writing; rename would replace an empty dir
            raise ScaffoldError(_exists_message(target))
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _exists_message(target: Path) -> str:
    return f"{target} already exists; choose another NAME or --dir (nothing was written)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
