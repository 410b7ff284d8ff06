"""``swiftkit list models|datasets|templates|preprocessors|rewards|benchmarks [--tag T] [--json]``."""

from __future__ import annotations

import argparse
import dataclasses
import json

from swiftkit.cli.args import add_plugin_options, blocked_names
from swiftkit.commands import build_host

KINDS = ("models", "datasets", "templates", "preprocessors", "rewards", "benchmarks")


def _detail(kind: str, registry, name: str, entry) -> str:
    if kind == "models":
        hub = entry.ms_id or entry.hf_id or ""
        return f"{entry.type or entry.model_type:<24} {'embedded' if getattr(entry, 'embedded', None) else hub}"
    if kind == "datasets":
        where = entry.path or entry.ms_id or entry.hf_id or ""
        return f"{where}  [{', '.join(entry.tags)}]" if entry.tags else where
    if kind == "templates":
        return entry.description
    if kind == "benchmarks":
        where = entry.ms_id or entry.hf_id or "local data only (NAME=PATH)"
        shots = f"{entry.few_shot}-shot" if entry.few_shot else "0-shot"
        return f"{entry.kind:<16} {entry.primary:<14} {shots:<7} {where}"
    doc = (getattr(entry, "__doc__", None) or "").strip().splitlines()
    return f"{registry.source(name)}: {doc[0] if doc else ''}".rstrip(": ")


def _as_json(kind: str, registry, name: str, entry) -> dict:
    if dataclasses.is_dataclass(entry):
        data = dataclasses.asdict(entry)
    else:
        doc = (getattr(entry, "__doc__", None) or "").strip()
        data = {"name": name, "doc": doc.splitlines()[0] if doc else ""}
    return {**data, "name": name, "source": registry.source(name)}


def _tags(entry) -> list[str]:
    return list(getattr(entry, "tags", None) or [])


def list_parser() -> argparse.ArgumentParser:
    """The flags of `swiftkit list`."""
    parser = argparse.ArgumentParser(prog="swiftkit list", description="List registered entries.")
    parser.add_argument("kind", choices=KINDS, help="What to list.")
    parser.add_argument("--tag", action="append", default=[], metavar="TAG",
                        help="Only entries carrying this tag (repeat for entries with every tag given), "
                        "e.g. --tag preference --tag zh. (datasets, models and benchmarks)")
    parser.add_argument("--family", default=None, metavar="F",
                        help="models: only this family (card), model type or config.json model_type.")
    parser.add_argument("--json", action="store_true", help="Print a JSON list instead of a table.")
    add_plugin_options(parser)
    return parser


def list_command(argv: list[str]) -> int:
    parser = list_parser()
    args = parser.parse_args(argv)

    host = build_host(args.plugins, [*args.disable_plugins, *blocked_names(args.blocked)])
    registry = getattr(host.registries, args.kind)
    wanted = {t.lower() for t in args.tag}
    items = [(name, entry) for name, entry in registry.items() if wanted <= set(_tags(entry))]
    if args.family:
        family = args.family.lower()
        items = [(n, e) for n, e in items
                 if family in {getattr(e, k, None) for k in ("family", "type", "model_type")}]
    if args.json:
        print(json.dumps([_as_json(args.kind, registry, n, e) for n, e in items], ensure_ascii=False, indent=1))
        return 0
    rows = [(name, _detail(args.kind, registry, name, entry)) for name, entry in items]
    width = max((len(name) for name, _ in rows), default=0)
    for name, detail in rows:
        print(f"{name:<{width}}  {detail}".rstrip())
    tagged = f" tagged {', '.join(sorted(wanted))}" if wanted else ""
    types = {getattr(e, "type", "") for _, e in items} - {""}
    in_types = f" in {len(types)} model types" if args.kind == "models" else ""
    print(f"# {len(rows)} {args.kind}{in_types}{tagged}")
    if wanted and not rows:
        known = sorted({t for _, e in registry.items() for t in _tags(e)})
        print(f"# known tags: {', '.join(known) or 'none'}")
    return 0
