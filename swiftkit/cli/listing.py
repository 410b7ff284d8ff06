"""``swiftkit list models|datasets|templates|preprocessors|rewards``: print what the registries hold."""

from __future__ import annotations

import argparse

from swiftkit.cli.args import add_plugin_options

KINDS = ("models", "datasets", "templates", "preprocessors", "rewards")


def _rows(kind: str, registries) -> list[tuple[str, str]]:
    registry = getattr(registries, kind)
    rows = []
    for name, entry in registry.items():
        if kind == "models":
            hub = entry.ms_id or entry.hf_id or ""
            extra = "embedded" if getattr(entry, "embedded", None) else hub
            rows.append((name, f"{entry.family:<10} {extra}"))
        elif kind == "datasets":
            where = entry.path or entry.ms_id or entry.hf_id or ""
            rows.append((name, where))
        elif kind == "templates":
            rows.append((name, entry.description))
        else:
            doc = (getattr(entry, "__doc__", None) or "").strip().splitlines()
            rows.append((name, f"{registry.source(name)}: {doc[0] if doc else ''}".rstrip(": ")))
    return rows


def list_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swiftkit list", description="List registered entries.")
    parser.add_argument("kind", choices=KINDS, help="What to list.")
    add_plugin_options(parser)
    args = parser.parse_args(argv)

    from swiftkit.plugins import build_registries, get_plugin_manager

    pm = get_plugin_manager(args.plugins, args.disable_plugins)
    rows = _rows(args.kind, build_registries(pm))
    width = max((len(name) for name, _ in rows), default=0)
    for name, detail in rows:
        print(f"{name:<{width}}  {detail}".rstrip())
    print(f"# {len(rows)} {args.kind}")
    return 0
