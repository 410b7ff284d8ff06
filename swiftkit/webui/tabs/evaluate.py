"""The Evaluate tab: `swiftkit eval` as a job on chosen benchmarks and models, then its report.

Benchmarks are the registered ones (``swiftkit list benchmarks``) or ``NAME=PATH`` for a local file or folder;
models are a model, adapters (a run or checkpoint) and ``--compare`` entries (``base``, other runs). When the
job has finished, the comparison report (report.json as a table, report.png) or, for a single model, every
metric of summary.json is shown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gradio as gr

from swiftkit.webui import forms, i18n
from swiftkit.webui.tabs import FlagForm, JobPanel, adapter_picker, model_picker

LABELS = {
    "eval.run": ("Run evaluation", "开始评测"),
    "eval.jobs": ("Evaluations", "评测任务"),
    "eval.none": ("No evaluation yet.", "还没有评测任务。"),
    "eval.report": ("Report", "评测报告"),
    "eval.chart": ("Chart", "图表"),
    "eval.folder": ("Results folder", "结果目录"),
    "eval.base_choice": ("base (the base model of --adapters)", "base（--adapters 的基座模型）"),
    "eval.benchmarks_info": ("Registered benchmarks, or NAME=PATH (typed, then Enter) for a local file or folder.",
                             "注册的评测基准，或输入 NAME=PATH（回车确认）使用本地文件或目录。"),
    "eval.no_results": ("The job ended without a results folder: see its log.", "任务结束但没有结果目录：请查看日志。"),
}
i18n.register(LABELS)

RESULTS_RE = re.compile(r"\[swiftkit\] eval: results in (.+)$", re.MULTILINE)


def benchmark_picker(ctx):
    """A widget maker for ``--eval_dataset``: the registered benchmarks and ``qa``, or NAME=PATH typed in."""
    choices = [(f"{name} ({card.kind}, {card.primary})", name) for name, card in ctx.host.registries.benchmarks.items()]
    choices.append(("qa (--val_dataset replies against their answers)", "qa"))

    def make(spec, elem_id: str):
        return gr.Dropdown(choices=choices, value=list(spec.default), multiselect=True, allow_custom_value=True,
                           filterable=True, label=spec.name,
                           info=f"{i18n.t('eval.benchmarks_info', ctx.lang)} {spec.help}", elem_id=elem_id)

    return make


def results_dir(ctx, job) -> Path | None:
    """The folder an eval job wrote (named in its log), or None."""
    found = RESULTS_RE.findall(ctx.jobs.log_tail(job.id, 400))
    if not found:
        return None
    path = Path(job.cwd) / found[-1].strip()
    return path if path.is_dir() else None


def _num(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def report_table(report: dict) -> dict:
    """report.json as a table: a row per benchmark; each model's value, and for the compared ones the difference
    from the baseline, its 95% interval and the verdict."""
    labels = [m["label"] for m in report["models"]]
    baseline = report["baseline"]
    headers = ["benchmark", "metric", *labels]
    for label in labels:
        if label != baseline:
            headers += [f"Δ {label}", f"95% CI {label}", f"verdict {label}"]
    rows = []
    for task, entry in report["tasks"].items():
        arrow = "↑" if entry["higher_is_better"] else "↓"
        cells = entry["models"]
        row = [task, f"{entry['metric']} {arrow}"]
        row += ["missing" if cells[label].get("missing") else _num(cells[label]["value"]) for label in labels]
        for label in labels:
            if label == baseline:
                continue
            cell = cells[label]
            if cell.get("missing"):
                row += ["", "", "missing"]
                continue
            ci = f"{cell['ci_low']:+.4g} … {cell['ci_high']:+.4g}" if cell.get("ci_low") is not None \
                else cell.get("ci_note") or "n/a"
            delta = "" if cell.get("delta") is None else f"{cell['delta']:+.4g}"
            row += [delta, ci, cell.get("verdict", "")]
        rows.append(row)
    return {"headers": headers, "data": rows}


def summary_table(summary: dict) -> dict:
    """summary.json as a table: one row per model, benchmark and metric."""
    rows = []
    for label, results in summary.get("results", {}).items():
        for benchmark, metrics in results.items():
            for metric, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    rows.append([label, benchmark, metric, _num(value)])
    return {"headers": ["model", "benchmark", "metric", "value"], "data": rows}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def results_view(folder: Path | None) -> tuple[dict | None, str | None]:
    """``(table, chart path)`` of an eval results folder: the comparison report when there is one, else the
    summary's metrics."""
    if folder is None:
        return None, None
    report = _read_json(folder / "report.json")
    if isinstance(report, dict):
        chart = folder / "report.png"
        return report_table(report), str(chart) if chart.is_file() else None
    summary = _read_json(folder / "summary.json")
    return (summary_table(summary) if isinstance(summary, dict) else None), None


def build(ctx) -> None:
    lang = ctx.lang
    base_choice = ((i18n.t("eval.base_choice", lang), "base"),)
    form = FlagForm(["eval"], ctx.host, "eval", lang, basic=forms.BASIC_FLAGS["eval"],
                    widgets={"model": model_picker(ctx), "adapters": adapter_picker(ctx),
                             "compare": adapter_picker(ctx, base_choice), "eval_dataset": benchmark_picker(ctx)})
    panel = JobPanel(ctx, form, "eval", "eval")
    folder = gr.Textbox(label=i18n.t("eval.folder", lang), interactive=False, elem_id="eval-folder")
    table = gr.Dataframe(label=i18n.t("eval.report", lang), interactive=False, wrap=True, elem_id="eval-report")
    chart = gr.Image(label=i18n.t("eval.chart", lang), interactive=False, type="filepath", elem_id="eval-chart")

    def ended(job):
        out = results_dir(ctx, job)
        data, png = results_view(out)
        note = i18n.t("eval.no_results", lang) if out is None else ""
        return {folder: str(out or ""), table: data, chart: png}, note

    panel.wire([folder, table, chart], ended)
    panel.refresh_pickers({"adapters": (), "compare": base_choice})
