"""Built-in row transforms a dataset card can select with ``preprocessor:``.

They are registered through the ``swiftkit_register_preprocessors`` hook like a plugin's.

A preprocessor takes the raw rows of one dataset (after column renaming, before format detection)
and returns new raw rows. It receives the options that concern it as keywords.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from swiftkit.data.errors import DatasetError

NAME, AUTHOR = "{{NAME}}", "{{AUTHOR}}"


def _zh_en(values: Sequence[str], flag: str, source: str) -> tuple[str, str]:
    values = tuple(values)
    if len(values) > 2 or not all(isinstance(v, str) and v.strip() for v in values):
        raise DatasetError(f"{source}: {flag} takes one name, or a Chinese and an English name; got {values!r}")
    return (values[0], values[-1])


def self_cognition(rows: list[dict], *, model_name: Sequence[str] = (), model_author: Sequence[str] = (),
                   source: str = "self-cognition") -> list[dict]:
    """Fill ``{{NAME}}``/``{{AUTHOR}}`` in every string field from ``model_name``/``model_author``.

    Each option is one name (used for every row) or two names (Chinese rows get the first,
    English rows the second), chosen by the row's ``lang`` field (``"zh"`` or ``"en"``).
    """
    if not model_name or not model_author:
        raise DatasetError(
            f"{source}: self-cognition needs --model_name and --model_author (one name each, or a "
            "Chinese and an English name), e.g. --model_name Nova --model_author Acme"
        )
    names = _zh_en(model_name, "--model_name", source)
    authors = _zh_en(model_author, "--model_author", source)
    out = []
    for row in rows:
        lang = row.get("lang")
        if lang not in ("zh", "en"):
            raise DatasetError(f"{row.get('_origin', source)}: 'lang' must be 'zh' or 'en', got {lang!r}")
        i = 0 if lang == "zh" else 1
        filled = {
            k: v.replace(NAME, names[i]).replace(AUTHOR, authors[i]) if isinstance(v, str) and k != "_origin" else v
            for k, v in row.items()
        }
        out.append(filled)
    return out


BUILTIN_PREPROCESSORS: dict[str, Callable[..., list[dict]]] = {
    "self_cognition": self_cognition,
}
