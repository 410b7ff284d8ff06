"""``swiftkit plugins list``: every loaded plugin, where it came from and the hooks it implements."""

from __future__ import annotations

import argparse


def plugins_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swiftkit plugins", description="Inspect plugins.")
    sub = parser.add_subparsers(dest="action", required=True)
    lister = sub.add_parser("list", help="Show loaded plugins, their origin and hooks.")
    lister.add_argument("--plugins", nargs="+", default=[], help="Local plugin files to load too.")
    lister.add_argument("--disable_plugins", nargs="+", default=[], help="Plugins not to load.")
    args = parser.parse_args(argv)

    from swiftkit.plugins import describe_plugins, get_plugin_manager

    pm = get_plugin_manager(args.plugins, args.disable_plugins)
    rows = describe_plugins(pm)
    for name, origin, hooks in rows:
        print(f"{name}\n    from:  {origin}\n    hooks: {', '.join(hooks) or '-'}")
    print(f"# {len(rows)} plugins")
    return 0
