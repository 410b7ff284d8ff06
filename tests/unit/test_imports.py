"""Function-level imports exist only to defer heavy libraries, and say so (`# defers torch`)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "swiftkit"
HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "fastapi", "gradio")


def function_level_imports() -> list[tuple[str, int, str, str]]:
    """(file, line, imported module, source line) of every import inside a function."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").split("\n")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        module = sub.module if isinstance(sub, ast.ImportFrom) else sub.names[0].name
                        out.append((str(path.relative_to(PACKAGE.parent)), sub.lineno, module or "",
                                    lines[sub.lineno - 1]))
    return out


IMPORTS = function_level_imports()


def test_every_function_level_import_says_what_it_defers():
    silent = [f"{f}:{n}: {src.strip()}" for f, n, _, src in IMPORTS if "# defers " not in src]
    assert not silent, "import at module level, or say `# defers LIB`:\n" + "\n".join(silent)


def _module_file(module: str) -> Path:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@cache
def imports_heavy_library(module: str, _seen: frozenset[str] = frozenset()) -> bool:
    """Whether importing ``module`` imports one of HEAVY, following its module-level imports (a cycle of
    swiftkit modules is followed once)."""
    seen = _seen | {module}
    tree = ast.parse(_module_file(module).read_text(encoding="utf-8"))
    for node in tree.body:  # module level only: what runs on import
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in filter(None, names):
                if name.split(".")[0] in HEAVY:
                    return True
                if name.startswith("swiftkit.") and name not in seen and imports_heavy_library(name, seen):
                    return True
    return False


@pytest.mark.parametrize("module", sorted({m for _, _, m, _ in IMPORTS if m.startswith("swiftkit")}))
def test_a_deferred_swiftkit_module_really_is_heavy(module):
    assert imports_heavy_library(module), f"{module} imports none of {HEAVY}: import it at module level"
