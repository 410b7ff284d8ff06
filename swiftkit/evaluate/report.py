"""The comparison report of ``swiftkit eval --compare``: the same benchmarks run on several models, side by side.

:func:`write_report` turns the results of several runs into ``report.json`` (every number),
``report.md`` (a table a person reads) and ``report.png`` (a grouped bar chart). :func:`build_report`
computes the numbers and :func:`paired_bootstrap` the confidence interval of each difference; nothing
here runs a model or reads a benchmark.

The input, one entry per model; the first is the baseline every other model is compared with::

    runs = [
        {"label": "base", "model": "Qwen/Qwen2.5-0.5B-Instruct", "adapters": [],
         "results": {"arc_easy": {"metrics": {"acc": 0.5, "acc_norm": 0.55, "num_samples": 40},
                                  "primary": "acc",                # the metric the report compares
                                  "item_scores": [1.0, 0.0, ...],  # the primary metric per item, in item order
                                  "higher_is_better": True}}},
        {"label": "tuned", "model": "...", "adapters": ["output/v0-.../checkpoint-100"], "results": {...}},
    ]

``item_scores`` lists the same items in the same order in every run; a task without them (a corpus-level
metric such as BLEU) gets a difference but no interval ("n/a"). A task some runs lack is shown as
missing for those runs. ``higher_is_better`` is False for metrics such as perplexity.

The interval is a paired percentile bootstrap: the items of a task are resampled with replacement, the
same draw for both models, and the spread of the mean difference over the resamples is the interval.
It says how much a difference depends on which items the benchmark happened to contain; it says nothing
about sampling noise in generation. A model *improved* on a task when the whole interval lies on the
better side of 0, *regressed* when it lies on the worse side, and shows *no clear change* otherwise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swiftkit.core.errors import SwiftkitError
from swiftkit.core.io import OutputError, write_json, write_problem

CONFIDENCE = 0.95
_BLOCK = 1 << 21  # resampled item indices drawn at once: bounds memory for benchmarks with many items
IMPROVED, REGRESSED, NO_CLEAR_CHANGE = "improved", "regressed", "no clear change"
NO_INTERVAL, MISSING = "no interval", "missing"
VERDICTS = (IMPROVED, REGRESSED, NO_CLEAR_CHANGE, NO_INTERVAL, MISSING)


class ReportError(SwiftkitError, ValueError):
    """The results handed to the report are malformed; the message names the run, task and field."""


def paired_bootstrap(base: Sequence[float], other: Sequence[float], *, n_resamples: int = 1000,
                     confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float]:
    """``(delta, low, high)``: the mean of ``other - base`` over items and its percentile bootstrap interval.

    Items are resampled jointly (item ``i`` of both lists stays together), ``n_resamples`` times, from
    ``numpy.random.default_rng(seed)``: the same inputs and seed give the same interval.
    """
    if len(base) != len(other):
        raise ValueError(f"paired bootstrap needs one score per item in both lists: base has {len(base)} "
                         f"items, other has {len(other)}")
    if not base:
        raise ValueError("paired bootstrap needs at least one item; both lists are empty")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    import numpy as np  # defers numpy

    diffs = np.asarray(other, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    if not np.isfinite(diffs).all():
        raise ValueError(f"paired bootstrap needs finite scores; item {int(np.argmin(np.isfinite(diffs)))} is not")
    n = len(diffs)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    per_block = max(1, _BLOCK // n)
    for start in range(0, n_resamples, per_block):
        stop = min(n_resamples, start + per_block)
        means[start:stop] = diffs[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(diffs.mean()), float(low), float(high)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ReportError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _task_result(run: dict, task: str) -> dict:
    """One run's result on one task, checked: value, item scores, direction, sample count."""
    where = f"run {run['label']!r}, task {task!r}"
    result = run["results"][task]
    primary = result.get("primary")
    metrics = result.get("metrics") or {}
    if primary not in metrics:
        raise ReportError(f"{where}: the primary metric {primary!r} is not among its metrics {sorted(metrics)}")
    items = result.get("item_scores")
    if items is not None:
        items = [_number(x, f"{where}: item_scores[{i}]") for i, x in enumerate(items)]
    samples = metrics.get("num_samples", len(items) if items is not None else None)
    return {"metric": primary, "value": _number(metrics[primary], f"{where}: metrics[{primary!r}]"),
            "items": items, "higher_is_better": bool(result.get("higher_is_better", True)), "num_samples": samples}


def _verdict(low: float | None, high: float | None, higher_is_better: bool) -> str:
    if low is None:
        return NO_INTERVAL
    if (low > 0 and higher_is_better) or (high < 0 and not higher_is_better):
        return IMPROVED
    if (high < 0 and higher_is_better) or (low > 0 and not higher_is_better):
        return REGRESSED
    return NO_CLEAR_CHANGE


def _compare(base: dict, other: dict, task: str, label: str, *, n_resamples: int, confidence: float,
             seed: int) -> dict:
    """Delta, interval and verdict of ``other`` against ``base`` on one task."""
    cell = {"delta": other["value"] - base["value"], "ci_low": None, "ci_high": None, "ci_note": None}
    if base["items"] is None or other["items"] is None:
        cell["ci_note"] = "no per-item scores"
    elif len(base["items"]) != len(other["items"]):
        cell["ci_note"] = f"item counts differ (baseline {len(base['items'])}, {label} {len(other['items'])})"
    elif not base["items"]:
        cell["ci_note"] = "no items"
    else:
        delta, low, high = paired_bootstrap(base["items"], other["items"], n_resamples=n_resamples,
                                            confidence=confidence, seed=seed)
        scale = max(1.0, abs(base["value"]), abs(other["value"]))
        if math.isclose(delta, cell["delta"], abs_tol=1e-3 * scale):  # metrics may be stored rounded
            cell["ci_low"], cell["ci_high"] = low, high
        else:  # e.g. a corpus perplexity is not the mean of per-item perplexities
            cell["ci_note"] = f"the item scores of task {task!r} do not average to its metric"
    cell["verdict"] = _verdict(cell["ci_low"], cell["ci_high"], base["higher_is_better"])
    return cell


def _check_runs(runs: Sequence[dict]) -> None:
    if len(runs) < 2:
        raise ReportError(f"a comparison needs a baseline and at least one other run, got {len(runs)} run(s)")
    labels = [run.get("label") for run in runs]
    for i, run in enumerate(runs):
        if not isinstance(run.get("label"), str) or not run["label"]:
            raise ReportError(f"run {i} has no 'label' (a non-empty name shown in the report)")
        if not isinstance(run.get("results"), dict):
            raise ReportError(f"run {run['label']!r} has no 'results' mapping task -> result")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ReportError(f"run labels must differ; repeated: {', '.join(duplicates)}")


def build_report(runs: Sequence[dict], *, n_resamples: int = 1000, seed: int = 0,
                 confidence: float = CONFIDENCE) -> dict:
    """The comparison as JSON-ready data (the input layout is in the module docstring).

    ``tasks`` maps each task (in order of first appearance) to its metric, direction and, per run label,
    ``value``, ``num_samples``, and for every run but the baseline ``delta``, ``ci_low``, ``ci_high``,
    ``ci_note`` (why there is no interval) and ``verdict``; a run without the task has ``missing: true``.
    ``summary`` maps each compared label to the tasks per verdict.
    """
    _check_runs(runs)
    baseline = runs[0]["label"]
    tasks: list[str] = []
    for run in runs:
        tasks += [task for task in run["results"] if task not in tasks]
    report_tasks = {}
    summary = {run["label"]: {verdict: [] for verdict in VERDICTS} for run in runs[1:]}
    for task in tasks:
        results = {run["label"]: _task_result(run, task) for run in runs if task in run["results"]}
        first = next(iter(results.values()))
        for label, result in results.items():
            if (result["metric"], result["higher_is_better"]) != (first["metric"], first["higher_is_better"]):
                raise ReportError(f"task {task!r} is compared on {first['metric']!r} "
                                  f"(higher is better: {first['higher_is_better']}) in one run but on "
                                  f"{result['metric']!r} (higher is better: {result['higher_is_better']}) "
                                  f"in run {label!r}")
        cells = {}
        for run in runs:
            label = run["label"]
            result = results.get(label)
            if result is None:
                cells[label] = {"missing": True}
                if label != baseline:
                    summary[label][MISSING].append(task)
                continue
            cell = {"missing": False, "value": result["value"], "num_samples": result["num_samples"]}
            if label != baseline:
                if baseline in results:
                    cell.update(_compare(results[baseline], result, task, label, n_resamples=n_resamples,
                                         confidence=confidence, seed=seed))
                else:
                    cell.update(delta=None, ci_low=None, ci_high=None, ci_note="the baseline lacks this task",
                                verdict=MISSING)
                summary[label][cell["verdict"]].append(task)
            cells[label] = cell
        report_tasks[task] = {"metric": first["metric"], "higher_is_better": first["higher_is_better"],
                              "models": cells}
    return {
        "baseline": baseline,
        "models": [{"label": run["label"], "model": run.get("model"), "adapters": list(run.get("adapters") or [])}
                   for run in runs],
        "bootstrap": {"method": "paired percentile bootstrap over items", "n_resamples": n_resamples,
                      "confidence": confidence, "seed": seed},
        "tasks": report_tasks,
        "summary": summary,
    }


def _decimals(task: dict) -> int:
    """3 decimals for a task whose values are all fractions in [0, 1], else 2 (perplexity, BLEU 0-100)."""
    values = [cell["value"] for cell in task["models"].values() if not cell["missing"]]
    return 3 if all(0 <= v <= 1 for v in values) else 2


def _signed(x: float, decimals: int) -> str:
    return f"{round(x, decimals) + 0.0:+.{decimals}f}"  # + 0.0 turns a rounded -0 into +0


def _markdown_cell(cell: dict, decimals: int, level: str) -> str:
    if cell["missing"]:
        return "missing"
    text = f"{cell['value']:.{decimals}f}"
    if "delta" not in cell:  # the baseline
        return text
    if cell["delta"] is None:
        return f"{text} (no baseline)"
    if cell["ci_low"] is None:
        interval = f"{level} CI n/a"
    else:
        interval = f"{level} CI {_signed(cell['ci_low'], decimals)} … {_signed(cell['ci_high'], decimals)}"
    return f"{text} ({_signed(cell['delta'], decimals)}, {interval})"


def _escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_markdown(report: dict, title: str = "swiftkit eval comparison") -> str:
    """``report.md``: the models, one table row per task, what the interval means, and the summary."""
    labels = [m["label"] for m in report["models"]]
    boot = report["bootstrap"]
    level = f"{boot['confidence'] * 100:g}%"
    lines = [f"# {title}", ""]
    for i, m in enumerate(report["models"]):
        adapters = f", adapters {', '.join(f'`{a}`' for a in m['adapters'])}" if m["adapters"] else ""
        role = "baseline" if i == 0 else "compared"
        lines.append(f"- **{_escape(m['label'])}** ({role}): `{m['model']}`{adapters}")
    lines += ["", "| task | metric | " + " | ".join(_escape(label) for label in labels) + " |",
              "|" + "---|" * (len(labels) + 2)]
    for name, task in report["tasks"].items():
        decimals = _decimals(task)
        arrow = "↑" if task["higher_is_better"] else "↓"
        cells = [_markdown_cell(task["models"][label], decimals, level) for label in labels]
        lines.append(f"| {_escape(name)} | {_escape(task['metric'])} {arrow} | " + " | ".join(cells) + " |")
    lines += ["", f"Each value in parentheses is the difference from **{_escape(report['baseline'])}**, then its "
              f"{level} confidence interval: a paired bootstrap over the task's items ({boot['n_resamples']} "
              f"resamples, seed {boot['seed']}, both models scored on the same resampled items). It shows how "
              "much the difference depends on which items the benchmark happened to contain. ↑: higher is "
              "better, ↓: lower is better. \"CI n/a\": the task has no per-item scores (a corpus-level "
              "metric), or they do not match between the runs, so there is no interval.", "", "## Summary", ""]
    for label, verdicts in report["summary"].items():
        parts = [f"{verdict} {len(verdicts[verdict])}" + (f" ({', '.join(verdicts[verdict])})"
                                                           if verdicts[verdict] else "")
                 for verdict in VERDICTS if verdicts[verdict] or verdict not in (NO_INTERVAL, MISSING)]
        lines.append(f"- **{_escape(label)}** against {_escape(report['baseline'])}: " + "; ".join(parts))
    lines += ["", f"*Improved* / *regressed*: the whole {level} interval lies on the better / worse side of 0; "
              "*no clear change*: it contains 0."]
    return "\n".join(lines) + "\n"


_PANELS = ((True, True, "higher is better (scores 0-1)"), (True, False, "higher is better"),
           (False, None, "lower is better"))


def _rows(widths: list[float], most: float = 12) -> list[list[float]]:
    """Panel widths packed in order into rows of at most ``most`` (a wider panel gets a row of its own)."""
    rows: list[list[float]] = []
    for width in widths:
        if rows and sum(rows[-1]) + width <= most:
            rows[-1].append(width)
        else:
            rows.append([width])
    return rows


def draw_report(report: dict, path: Path, title: str = "swiftkit eval comparison") -> None:
    """``report.png``: one group of bars per task, one bar per model, with each value written on its bar.

    Tasks whose metric is lower-is-better, and tasks whose values are not fractions in [0, 1], get panels
    of their own (side by side, each with its own scale), so a perplexity of 12 does not flatten accuracies
    of 0.6. On every compared model's bar, an error bar spans the baseline's value plus the interval of the
    difference: when it clears the baseline's value, the change is clear.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # defers matplotlib
    from matplotlib.figure import Figure  # defers matplotlib
    from matplotlib.patches import Patch  # defers matplotlib

    labels = [m["label"] for m in report["models"]]
    panels = []
    for higher, fractions, heading in _PANELS:
        names = [name for name, task in report["tasks"].items() if task["higher_is_better"] == higher
                 and (fractions is None or (_decimals(task) == 3) == fractions)]
        if names:
            panels.append((heading, names))
    if not panels:
        panels = [("no tasks", [])]
    rows = _rows([max(len(names), 1.4) for _, names in panels])  # panel widths in tasks
    units = max(sum(row) for row in rows)
    bars = len(labels) * max(len(names) for _, names in panels)
    fig = Figure(figsize=(max(6.5, 1.2 + 0.6 * max(map(len, rows)) + units * (0.3 + 0.25 * len(labels))),
                          0.6 + 4.2 * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)  # an explicit Agg canvas: the global pyplot backend stays untouched
    axes = []
    for sub, row in zip(fig.subfigures(len(rows), 1, squeeze=False)[:, 0], rows):
        filler = units - sum(row) > 0.5  # an empty slot keeps one bar as wide in every row
        row_axes = sub.subplots(1, len(row) + filler, squeeze=False, width_ratios=row + [units - sum(row)] * filler)[0]
        if filler:
            row_axes[-1].set_axis_off()
        axes += list(row_axes[:len(row)])
    colors = ["0.62"] + [f"C{i % 10}" for i in range(len(labels) - 1)]
    width = 0.8 / len(labels)
    font = 8 if bars <= 16 else 6.5
    rotation = 0 if bars <= 16 else 90
    for ax, (heading, names) in zip(axes, panels):
        for j, label in enumerate(labels):
            xs, heights, errors, tops = [], [], [[], []], []
            for x, name in enumerate(names):
                task = report["tasks"][name]
                cell = task["models"][label]
                pos = x + (j - (len(labels) - 1) / 2) * width
                if cell["missing"]:
                    ax.text(pos, 0, "missing", rotation=90, ha="center", va="bottom", fontsize=font, color="0.4")
                    continue
                low = high = 0.0
                if cell.get("ci_low") is not None:
                    low, high = max(0.0, cell["delta"] - cell["ci_low"]), max(0.0, cell["ci_high"] - cell["delta"])
                xs.append(pos)
                heights.append(cell["value"])
                errors[0].append(low)
                errors[1].append(high)
                tops.append((pos, cell["value"] + high, f"{cell['value']:.{_decimals(task)}f}"))
            ax.bar(xs, heights, width * 0.92, color=colors[j],
                   yerr=errors if any(errors[0] + errors[1]) else None, capsize=2, ecolor="0.2")
            for pos, top, text in tops:
                ax.annotate(text, (pos, max(top, 0.0)), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=font, rotation=rotation)
        arrows = ["↑" if report["tasks"][n]["higher_is_better"] else "↓" for n in names]
        ax.set_xticks(range(len(names)),
                      [f"{n}\n{report['tasks'][n]['metric']} {a}" for n, a in zip(names, arrows)],
                      rotation=30 if len(names) > 6 or any(len(n) > 14 for n in names) else 0,
                      ha="right" if len(names) > 6 or any(len(n) > 14 for n in names) else "center",
                      fontsize=8)
        ax.set_title(heading, fontsize=10)
        ax.margins(y=0.22 if rotation else 0.12)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    handles = [Patch(color=color, label=label) for color, label in zip(colors, labels)]
    fig.suptitle(title, fontsize=11)
    fig.legend(handles=handles, loc="outside upper right", ncols=len(labels), fontsize=8)
    boot = report["bootstrap"]
    fig.supxlabel(f"error bars: {report['baseline']}'s value + the {boot['confidence'] * 100:g}% CI of the "
                  f"difference (paired bootstrap over items, {boot['n_resamples']} resamples)", fontsize=8)
    fig.savefig(path, format="png", dpi=100)


def _replace_atomically(path: Path, write) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        problem = write_problem(exc)
        if problem is None:
            raise
        raise OutputError(f"cannot write the file {str(path)!r}: {problem}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_report(runs: Sequence[dict], out_dir: Path, *, title: str = "swiftkit eval comparison",
                 n_resamples: int = 1000, seed: int = 0, confidence: float = CONFIDENCE) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.png`` into ``out_dir`` (created if needed), each
    atomically; returns their paths under the keys ``json``, ``md``, ``png``."""
    report = build_report(runs, n_resamples=n_resamples, seed=seed, confidence=confidence)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = write_problem(exc)
        if problem is None:
            raise
        raise OutputError(f"cannot write the folder {str(out_dir)!r}: {problem}") from exc
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": out_dir / "report.png"}
    write_json(paths["json"], {"title": title, **report})
    markdown = report_markdown(report, title)
    _replace_atomically(paths["md"], lambda tmp: tmp.write_text(markdown, encoding="utf-8"))
    _replace_atomically(paths["png"], lambda tmp: draw_report(report, tmp, title))
    return paths
