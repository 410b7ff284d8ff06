"""The hook reference in docs/ is generated from the hookspecs and is up to date."""

from pathlib import Path

from swiftkit.core import hookdoc

PAGE = Path(__file__).resolve().parents[3] / "docs" / "reference" / "hooks.md"


def test_hook_reference_is_fresh():
    assert PAGE.read_text(encoding="utf-8") == hookdoc.render(), (
        "docs/reference/hooks.md is stale: run `python -m swiftkit.core.hookdoc > docs/reference/hooks.md`"
    )


def test_every_hook_is_documented_like_pytest():
    for spec in hookdoc.hook_specs():
        doc = spec.__doc__ or ""
        summary = doc.strip().splitlines()[0] if doc.strip() else ""
        assert summary.endswith("."), f"{spec.__name__}: one-line summary"
        assert ":return:" in doc, f"{spec.__name__}: return value"
        assert "Use in plugins::" in doc and "@swiftkit.hookimpl" in doc, f"{spec.__name__}: example"
        for param in list(__import__("inspect").signature(spec).parameters):
            assert f" {param}:" in doc, f"{spec.__name__}: parameter {param} undocumented"
