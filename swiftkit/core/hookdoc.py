"""Generate ``docs/reference/hooks.md`` from the hookspecs (their signatures and docstrings).

    python -m swiftkit.core.hookdoc > docs/reference/hooks.md

A test regenerates the page and compares it with the committed one, so the reference cannot drift.
"""

from __future__ import annotations

import inspect

from swiftkit.core import hookspecs

HEADER = """# Hook reference

Generated from `swiftkit/hookspecs.py` by `python -m swiftkit.core.hookdoc`; do not edit by hand.
Implement a hook with `@swiftkit.hookimpl` in a module registered through the entry-point group
`swiftkit` or loaded with `--plugins FILE.py` (see [plugins](../plugins.md)).
"""


def hook_specs() -> list:
    """The hookspec functions, in the order they are declared."""
    specs = [f for name, f in vars(hookspecs).items() if name.startswith("swiftkit_") and callable(f)]
    return sorted(specs, key=lambda f: f.__code__.co_firstlineno)


def _kind(spec) -> str:
    opts = getattr(spec, "swiftkit_spec", {})
    if spec.__name__.startswith("swiftkit_register_"):
        return "once per plugin, in load order"
    if opts.get("firstresult"):
        return "firstresult"
    return "all results collected"


def render() -> str:
    parts = [HEADER, "| hook | calling |", "|---|---|"]
    specs = hook_specs()
    parts += [f"| [`{f.__name__}`](#{f.__name__}) | {_kind(f)} |" for f in specs]
    for f in specs:
        doc = inspect.cleandoc(f.__doc__ or "")
        parts += ["", f"## {f.__name__}", "", f"`{f.__name__}{inspect.signature(f)}` ({_kind(f)})", "", doc]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
