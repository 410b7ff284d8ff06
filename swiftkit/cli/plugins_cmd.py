"""``swiftkit plugins list|new``: inspect loaded plugins, or generate a new plugin distribution.

``list`` prints every plugin, where it came from, the hooks it implements, the names it offers to
choice flags (``swiftkit_choice_names``) and the entries it registered (models, datasets,
templates, preprocessors, rewards). A broken plugin (fails to import, implements an unknown hook,
fails while registering) is listed with its error instead of stopping the listing; the command
then exits with status 1. ``new NAME`` writes ``swiftkit-NAME/`` (see :mod:`swiftkit.cli.scaffold`).
"""

from __future__ import annotations

import argparse
import sys

from swiftkit.cli.args import add_plugin_options, blocked_names
from swiftkit.cli.scaffold import HOOK_KINDS, ScaffoldError, plugin_names, scaffold_plugin, usage
from swiftkit.commands import build_host
from swiftkit.core.choices import names_by_plugin
from swiftkit.core.plugins import REGISTRATION_HOOKS


def plugins_parser() -> argparse.ArgumentParser:
    """The flags of `swiftkit plugins list|new`."""
    parser = argparse.ArgumentParser(prog="swiftkit plugins", description="Inspect or create plugins.")
    sub = parser.add_subparsers(dest="action", required=True)
    lister = sub.add_parser("list", help="Show loaded plugins, their origin and hooks.")
    add_plugin_options(lister)
    new = sub.add_parser(
        "new",
        help="Generate a plugin distribution swiftkit-NAME/ (pyproject, package, tests, README).",
        description="Generate PARENT/swiftkit-NAME/: an installable plugin package with a working "
        "example of one hook, its own tests and a README. An existing directory is never overwritten.",
    )
    new.add_argument("name", metavar="NAME",
                     help="Plugin name, e.g. my-loss: what --loss_type/--callbacks/--template "
                     "select; the package is swiftkit_NAME with '-' as '_'.")
    new.add_argument("--dir", default=".", metavar="PARENT", help="Folder to create it in. (default: .)")
    new.add_argument("--hook", choices=list(HOOK_KINDS), default="loss",
                     help="Which hook the example implements. (default: loss)")
    return parser


def _shown(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 8 else f"{', '.join(names[:8])}, ... ({len(names)})"


def _list(args) -> int:
    host = build_host(args.plugins, [*args.disable_plugins, *blocked_names(args.blocked)], tolerant=True)
    registries = host.registries
    provided = names_by_plugin(host)
    broken = 0
    for name, info in host.infos.items():
        print(f"{name}\n    from:  {info.origin}")
        if not info.origin.startswith(("builtin", "file")):
            print(f"    package: {info.package}")
        if info.error is not None:
            broken += 1
            print(f"    BROKEN: {info.error}")
            continue
        print(f"    hooks: {', '.join(host.hooks_of(name)) or '-'}")
        for kind, names in provided.get(name, {}).items():
            print(f"    {kind}: {_shown(names)}")
        for _hook, attr in REGISTRATION_HOOKS:
            registered = getattr(registries, attr).registered_by(name)
            if registered:
                print(f"    registered {attr}: {_shown(registered)}")
    print(f"# {len(host.infos)} plugins" + (f", {broken} broken" if broken else ""))
    return 1 if broken else 0


def _new(args) -> int:
    try:
        target = scaffold_plugin(args.name, args.dir, args.hook)
    except ScaffoldError as exc:
        print(f"swiftkit plugins new: error: {exc}", file=sys.stderr)
        return 2
    names = plugin_names(args.name)
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    print(f"created {target}/ ({args.hook} plugin {names.name!r}, entry point {names.ident!r}):")
    for rel in files:
        print(f"  {rel}")
    print("\nnext:")
    print(f"  cd {target} && python -m pytest -q")
    print(f"  pip install -e {target}")
    print(f"  {usage(names.name, args.hook)}")
    return 0


def plugins_command(argv: list[str]) -> int:
    args = plugins_parser().parse_args(argv)
    return _new(args) if args.action == "new" else _list(args)
