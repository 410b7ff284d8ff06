"""``swiftkit plugins list|new``: inspect loaded plugins, or generate a new plugin distribution.

``list`` prints every loaded plugin, where it came from, the hooks it implements and the names
it offers to choice flags (``swiftkit_choice_names``). ``new NAME``
writes ``swiftkit-NAME/`` (see :mod:`swiftkit.scaffold`).
"""

from __future__ import annotations

import argparse
import sys

from swiftkit.cli.args import add_plugin_options


def _parser() -> argparse.ArgumentParser:
    from swiftkit.scaffold import HOOK_KINDS

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


def _list(args) -> int:
    from swiftkit.choices import names_by_plugin
    from swiftkit.plugins import describe_plugins, get_plugin_manager

    pm = get_plugin_manager(args.plugins, args.disable_plugins)
    rows = describe_plugins(pm)
    provided = names_by_plugin(pm)
    for name, origin, hooks in rows:
        print(f"{name}\n    from:  {origin}\n    hooks: {', '.join(hooks) or '-'}")
        for kind, names in provided.get(name, {}).items():
            shown = ", ".join(names) if len(names) <= 8 else f"{', '.join(names[:8])}, ... ({len(names)})"
            print(f"    {kind}: {shown}")
    print(f"# {len(rows)} plugins")
    return 0


def _new(args) -> int:
    from swiftkit.scaffold import ScaffoldError, plugin_names, scaffold_plugin, usage

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
    args = _parser().parse_args(argv)
    return _new(args) if args.action == "new" else _list(args)
