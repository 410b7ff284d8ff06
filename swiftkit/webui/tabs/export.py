"""The Quantize / Export tab: `swiftkit export` as a job (merged weights, or quantized with ``--quant_method``
bnb|torchao|gptq|awq|gguf, ``--to_ollama``), then its parity report and output folder.

``swiftkit quantize`` is ``swiftkit export`` with ``--quant_method``; the tab runs ``export`` with the flags of
its form. When the job has finished, ``parity.json`` of the artifact is shown as a table (the checks, then the
greedy replies of source and artifact side by side) with the files of the output folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gradio as gr

from swiftkit.core.choices import choice_names
from swiftkit.exporters.parity_report import summary_lines
from swiftkit.webui import forms, i18n
from swiftkit.webui.tabs import FlagForm, JobPanel, adapter_picker, model_picker

LABELS = {
    "export.run": ("Export", "导出"),
    "export.jobs": ("Exports", "导出任务"),
    "export.none": ("No export yet.", "还没有导出任务。"),
    "export.folder": ("Output folder", "输出目录"),
    "export.files": ("Files", "文件"),
    "export.parity": ("Parity with the source model", "与源模型的一致性"),
    "export.replies": ("Greedy replies: source and artifact", "贪心解码回复：源模型与导出模型"),
    "export.no_parity": ("No parity.json: the export failed or ran with --check_parity false; see the log.",
                         "没有 parity.json：导出失败或使用了 --check_parity false；请查看日志。"),
}
i18n.register(LABELS)

COMMAND = "export"
WRITTEN_RE = re.compile(r"\[swiftkit\] export: .* model written to (.+) \([0-9.]+ MiB\)$", re.MULTILINE)


def method_picker(ctx, quantizers: bool):
    """A widget maker for ``--export_format`` (``quantizers`` False) or ``--quant_method``: the names the loaded
    plugins declare for the export hook (built in: merged, bnb, torchao, gptq, awq, gguf), or one typed in."""
    names = choice_names(ctx.host, "export_format")
    choices = [("(none)", ""), *((n, n) for n in names if n != "merged")] if quantizers else names

    def make(spec, elem_id: str):
        return gr.Dropdown(choices=choices, value=spec.default or "", allow_custom_value=True, label=spec.name,
                           info=spec.help, elem_id=elem_id)

    return make


def output_folder(ctx, job) -> Path | None:
    """The folder an export job wrote: the one its log names, else its ``--output_dir``; None when absent."""
    found = WRITTEN_RE.findall(ctx.jobs.log_tail(job.id, 400))
    given = job.values.get("output_dir")
    path = found[-1].strip() if found else given
    if not path:
        return None
    folder = Path(job.cwd) / Path(path).expanduser()
    return folder if folder.is_dir() else None


def parity_table(parity: dict) -> dict:
    """The checks of a parity report, one row each: what was compared and the outcome, as the CLI prints it."""
    rows = []
    for line in summary_lines(parity):
        check, sep, result = line.strip().partition(": ")
        rows.append([check, result] if sep else ["", check])
    return {"headers": ["check", "result"], "data": rows}


def replies_table(parity: dict) -> dict:
    """The parity conversations' greedy replies of the source model and of the artifact."""
    replies = (parity.get("replies") or {}).get("replies") or []
    rows = [[r.get("prompt", ""), r.get("source", ""), r.get("artifact", ""), "yes" if r.get("equal") else "no"]
            for r in replies]
    return {"headers": ["prompt", "source", "artifact", "identical"], "data": rows}


def files_table(folder: Path) -> dict:
    rows = [[p.name, f"{p.stat().st_size / 2**20:.2f} MiB"] for p in sorted(folder.iterdir()) if p.is_file()]
    return {"headers": ["file", "size"], "data": rows}


def build(ctx) -> None:
    lang = ctx.lang
    form = FlagForm([COMMAND], ctx.host, "export", lang, basic=forms.BASIC_FLAGS[COMMAND],
                    widgets={"model": model_picker(ctx), "adapters": adapter_picker(ctx),
                             "export_format": method_picker(ctx, quantizers=False),
                             "quant_method": method_picker(ctx, quantizers=True)})
    panel = JobPanel(ctx, form, COMMAND, "export", commands=("export", "quantize"))
    folder = gr.Textbox(label=i18n.t("export.folder", lang), interactive=False, elem_id="export-folder",
                        buttons=["copy"])
    parity = gr.Dataframe(label=i18n.t("export.parity", lang), interactive=False, wrap=True, elem_id="export-parity")
    replies = gr.Dataframe(label=i18n.t("export.replies", lang), interactive=False, wrap=True,
                           elem_id="export-replies")
    files = gr.Dataframe(label=i18n.t("export.files", lang), interactive=False, elem_id="export-files")

    def ended(job):
        out = output_folder(ctx, job)
        report = _read_json(out / "parity.json") if out is not None else None
        note = i18n.t("export.no_parity", lang) if report is None else ""
        return {folder: str(out or ""), parity: parity_table(report) if report else None,
                replies: replies_table(report) if report else None,
                files: files_table(out) if out is not None else None}, note

    panel.wire([folder, parity, replies, files], ended)
    panel.refresh_pickers({"adapters": ()})


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
