"""Data lint: every problem in a dataset, with its place, before any model weights are loaded.

Errors are rows that cannot be trained on (see :mod:`swiftkit.data.convert` for the checks:
missing or invalid role, empty or non-string content, wrong turn order, no assistant reply, ...);
training refuses them unless ``--skip_bad_rows``. Warnings are rows that train but probably should
not: exact duplicates, and (with a tokenizer) rows over ``--max_length`` that the ``delete``
strategy will skip. Template errors found while encoding (e.g. tools the chat template cannot
show) are errors, and so is every image of a row that cannot be opened (a missing file, a file
that is not an image, a URL that cannot be fetched): lint opens them all, which training only does
when it reaches the row.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from swiftkit.data.alignment import CONVERTERS
from swiftkit.data.encode_alignment import encode_row
from swiftkit.data.errors import DatasetError
from swiftkit.data.length import check_length
from swiftkit.data.limits import DEFAULT_MAX_ROW_BYTES
from swiftkit.data.loader import LoadReport, load_rows, row_content
from swiftkit.data.media import check_images, has_media
from swiftkit.templates import SequenceTooLong, TemplateError


@dataclass
class Problem:
    origin: str  # file:line (or hub id and row)
    kind: str  # short category, counted in the summary
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        return f"{self.origin}: {self.severity}: {self.message} [{self.kind}]"


@dataclass
class LintReport:
    rows: int = 0
    usable: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def counts(self) -> list[tuple[str, str, int]]:
        """``(severity, kind, count)``, errors first, most frequent first."""
        counted = Counter((p.severity, p.kind) for p in self.problems)
        return sorted(((s, k, n) for (s, k), n in counted.items()), key=lambda t: (t[0] != "error", -t[2], t[1]))

    def summary(self) -> str:
        return (f"{_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')} in "
                f"{_plural(self.rows, 'row')} ({self.usable} usable)")

    def to_json(self) -> dict:
        return {"rows": self.rows, "usable": self.usable, "errors": len(self.errors),
                "warnings": len(self.warnings),
                "counts": [{"severity": s, "kind": k, "count": n} for s, k, n in self.counts()],
                "problems": [vars(p) for p in self.problems]}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _place(problem: Problem) -> tuple[str, int]:
    """Sort key: the source, then the line / row number at the end of the origin."""
    head, _, tail = problem.origin.rpartition(":")
    digits = "".join(ch for ch in tail if ch.isdigit())
    return (head, int(digits)) if head and digits else (problem.origin, 0)


def _content_key(row: dict) -> str:
    return hashlib.sha256(row_content(row).encode()).hexdigest()


def duplicate_problems(rows: list[dict]) -> list[Problem]:
    """A warning for every row whose content equals an earlier row's."""
    first: dict[str, str] = {}
    out = []
    for row in rows:
        key = _content_key(row)
        if key in first:
            out.append(Problem(row["_origin"], "duplicate", f"same content as {first[key]}", "warning"))
        else:
            first[key] = row["_origin"]
    return out


def image_problems(rows: list[dict]) -> list[Problem]:
    """An error for every image of a row that cannot be opened; each distinct image is opened once, and
    a source row that became several rows (a KTO pair) is checked once."""
    checked: dict = {}
    seen: set[str] = set()
    out = []
    for row in rows:
        if not has_media(row) or row["_origin"] in seen:
            continue
        seen.add(row["_origin"])
        out += [Problem(row["_origin"], f"bad_{problem.split(' ', 1)[0]}", problem)  # bad_image/_video/_audio
                for problem in check_images(row, checked)]
    return out


def encoding_problems(rows: list[dict], template, rlhf_type: str | None = None) -> list[Problem]:
    """Encode every row: over-long rows (warnings under ``delete``) and template errors. With
    ``rlhf_type`` rows are encoded as that method's trainer gets them (both replies of a pair)."""

    def encode(row):
        if rlhf_type is not None:
            return encode_row(rlhf_type, template, row)
        check_length(template, row)  # a row far over --max_length is not tokenized at all
        return template.encode(row)

    out = []
    for row in rows:
        try:
            encode(row)
        except SequenceTooLong as exc:
            out.append(Problem(row["_origin"], "too_long", f"{_strip_origin(exc, row)}; the row will be skipped",
                               "warning"))
        except TemplateError as exc:
            out.append(Problem(row["_origin"], "template", _strip_origin(exc, row)))
        except DatasetError as exc:  # a vision-language model's processor refused the row's images
            out.append(Problem(row["_origin"], "processor", _strip_origin(exc, row)))
    return out


def _strip_origin(exc: Exception, row: dict) -> str:
    text = str(exc)
    prefix = f"{row['_origin']}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def lint_dataset(specs, *, registries, template=None, text_only: bool = False, columns=None,
                 seed: int = 42, model_name=(), model_author=(), use_hf: bool = False,
                 cache_dir: str | None = None, rlhf_type: str | None = None,
                 max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> LintReport:
    """Lint ``--dataset`` specs: row errors, images that cannot be opened, duplicates and (with
    ``template``) encoding problems.

    ``rlhf_type`` checks rows as that alignment method reads them (:mod:`swiftkit.data.alignment`).
    File-level problems (a missing file, an unknown dataset) still raise ``DatasetError``; rows over
    ``max_row_bytes`` or nested too deeply are row errors (:mod:`swiftkit.data.limits`).
    """

    loaded = LoadReport()
    rows = load_rows(
        specs, registries=registries, seed=seed,
        model_name=tuple(model_name), model_author=tuple(model_author), use_hf=use_hf, cache_dir=cache_dir,
        text_only=text_only, columns=columns, skip_bad_rows=True, report=loaded, sample=False, allow_empty=True,
        convert=CONVERTERS[rlhf_type] if rlhf_type else None, max_row_bytes=max_row_bytes,
    )
    # usable source rows: a KTO pair becomes two training rows but is one row of the file
    report = LintReport(rows=loaded.rows_read, usable=loaded.rows_read - len(loaded.skipped))
    report.problems += [Problem(e.origin, e.kind, e.problem) for e in loaded.skipped]
    unreadable = image_problems(rows)
    report.problems += unreadable
    report.problems += duplicate_problems(rows)
    if template is not None:  # a row whose images cannot be opened is not encoded (its error is reported above)
        bad = {p.origin for p in unreadable}
        report.problems += encoding_problems([r for r in rows if r["_origin"] not in bad], template, rlhf_type)
    report.problems.sort(key=_place)  # file order; the sort is stable for several per row
    return report
