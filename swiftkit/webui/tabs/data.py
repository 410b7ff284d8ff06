"""The Data tab: check a dataset before training (``swiftkit data lint``) and look at one encoded row
(``swiftkit data preview``) with the tokens that get loss highlighted.

The dataset is a registered name, a path typed in the working folder, or an uploaded file (copied to
``WORKDIR/uploads/``). Both actions are jobs of the CLI; the page shows what they print, the lint problems
as a table (``file:line``, severity, kind, message) and the preview's ``[[trained]]`` spans as highlighted
text.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from swiftkit.webui import forms, i18n
from swiftkit.webui.context import WebContext
from swiftkit.webui.tabs import FlagForm, dataset_picker, job_summary, model_picker

LABELS = {
    "data.intro": (
        "Check a dataset before training: **Lint** reports every bad row with its file and line; **Preview** "
        "shows one row as the model's chat template encodes it, the tokens that get loss highlighted.",
        "训练前检查数据集：**检查** 会列出每个有问题的行及其文件和行号；**预览** 按模型的对话模板编码一行数据，"
        "并高亮参与损失计算的 token。",
    ),
    "data.upload": ("Or upload a file (copied to {folder})", "或上传文件（复制到 {folder}）"),
    "data.lint": ("Lint", "检查"),
    "data.preview": ("Preview", "预览"),
    "data.show_command": ("Show command", "显示命令"),
    "data.problems": ("Problems", "问题"),
    "data.col.location": ("file:line", "文件:行"),
    "data.col.severity": ("severity", "级别"),
    "data.col.kind": ("kind", "类型"),
    "data.col.message": ("message", "说明"),
    "data.preview_label": ("Encoded row (highlighted: trained tokens)", "编码后的行（高亮：参与训练的 token）"),
    "data.log": ("What the command printed", "命令输出"),
    "data.no_problems": ("No problems found.", "未发现问题。"),
    "data.found_errors": ("**data lint** found errors (exit status {code})", "**data lint** 发现错误（退出码 {code}）"),
}
i18n.register(LABELS)

UPLOADS = "uploads"  # uploaded files go to WORKDIR/uploads/
BASIC = ("dataset", "model", "template", "max_length", "max_problems", "index", "show_tokens", "pretrain", "rlhf_type")
JOB_TIMEOUT = 600.0  # seconds a lint or preview may take before it is stopped
LOG_LINES = 5000
PROBLEM_RE = re.compile(r"^(?P<location>\S.*?): (?P<severity>error|warning): (?P<message>.*) \[(?P<kind>[\w.-]+)\]$")
ROW_RE = re.compile(r"^row \d+: ")
TOKENS_HEADER = "  pos      id  loss  token"
MARK_RE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
MARKED_NOTE_RE = re.compile(r"\s*\(marked .*\)$")  # "(marked [[like this]])": highlighted here instead


@dataclass(frozen=True)
class Problem:
    location: str  # file:line as the CLI prints it
    severity: str
    kind: str
    message: str


def parse_problems(log: str) -> list[Problem]:
    """The problems ``swiftkit data lint`` printed (``file:line: severity: message [kind]``)."""
    out = []
    for line in log.splitlines():
        m = PROBLEM_RE.match(line)
        if m:
            out.append(Problem(m["location"], m["severity"], m["kind"], m["message"]))
    return out


def preview_html(log: str) -> str:
    """What ``swiftkit data preview`` printed as HTML: its heading lines, then the row with the ``[[...]]``
    spans (the tokens that get loss) as ``<mark class="swk-trained">``; "" when the log has no preview."""
    lines = log.splitlines()
    start = next((i for i, line in enumerate(lines) if ROW_RE.match(line)), None)
    if start is None or start + 1 >= len(lines):
        return ""
    head = [lines[start], MARKED_NOTE_RE.sub("", lines[start + 1])]
    body = "\n".join(lines[start + 3:])
    body = body.split("\n\n" + TOKENS_HEADER, 1)[0].rstrip("\n")
    parts, last = [], 0
    for m in MARK_RE.finditer(body):
        parts.append(html.escape(body[last:m.start()]))
        parts.append(f'<mark class="swk-trained">{html.escape(m.group(1))}</mark>')
        last = m.end()
    parts.append(html.escape(body[last:]))
    heading = "<br>".join(html.escape(line) for line in head)
    return f'<div class="swk-preview-head">{heading}</div><div class="swk-preview">{"".join(parts)}</div>'


def save_upload(ctx: WebContext, path: str) -> str:
    """Copy an uploaded file to ``WORKDIR/uploads/`` (the jobs read it there); its path relative to WORKDIR."""
    target = ctx.workdir / UPLOADS / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return str(target.relative_to(ctx.workdir))


def build(ctx: WebContext) -> None:
    gr.Markdown(ctx.t("data.intro"))
    upload = gr.File(label=ctx.t("data.upload", folder=f"{ctx.workdir / UPLOADS}/"), type="filepath",
                     file_types=[".jsonl", ".json", ".csv", ".parquet", ".txt"], elem_id="data-upload", height=100)
    form = FlagForm(("data lint", "data preview"), ctx.host, "data", ctx.lang, BASIC,
                    widgets={"model": model_picker(ctx), "dataset": dataset_picker(ctx)})
    with gr.Row():
        lint_btn = gr.Button(ctx.t("data.lint"), variant="primary", elem_id="data-lint")
        preview_btn = gr.Button(ctx.t("data.preview"), elem_id="data-preview-button")
        command_btn = gr.Button(ctx.t("data.show_command"), elem_id="data-show-command")
    status = gr.Markdown(elem_id="data-status")
    command = gr.Code(label=ctx.t("common.command"), language="shell", interactive=False, elem_id="data-command")
    headers = [ctx.t(f"data.col.{c}") for c in ("location", "severity", "kind", "message")]
    problems = gr.Dataframe(headers=headers, value=[], label=ctx.t("data.problems"), interactive=False,
                            wrap=True, elem_id="data-problems", column_widths=["18%", "8%", "14%", "60%"])
    preview = gr.HTML(label=ctx.t("data.preview_label"), elem_id="data-preview")
    log = gr.Textbox(label=ctx.t("data.log"), lines=8, max_lines=30, interactive=False, elem_id="data-log")

    def on_upload(path):
        return gr.skip() if not path else gr.update(value=[save_upload(ctx, path)])

    upload.upload(on_upload, upload, form.inputs["dataset"])

    def checked(name: str, widget_values) -> tuple[dict, dict]:
        values = form.values(name, widget_values)
        return values, forms.validate(name, values, ctx.host)

    def run(name: str, widget_values):
        """Run ``swiftkit NAME`` as a job and wait: (values, errors, job or None, its log)."""
        values, errors = checked(name, widget_values)
        if errors:
            return values, errors, None, ""
        job = ctx.jobs.start(name, values, title=name)
        job = ctx.jobs.wait(job.id, JOB_TIMEOUT)
        if job.running:
            job = ctx.jobs.stop(job.id, timeout=10)
        return values, errors, job, ctx.jobs.log_tail(job.id, LOG_LINES)

    def errors_status(errors: dict) -> str:
        return f"**{ctx.t('common.error_prefix')}**: " + "; ".join(errors.values())

    def on_lint(*widget_values):
        _, errors, job, text = run("data lint", widget_values)
        if job is None:
            return [*form.error_updates(errors), errors_status(errors), gr.skip(), gr.update(value=[]), "", ""]
        found = parse_problems(text)
        rows = [[p.location, p.severity, p.kind, p.message] for p in found]
        lines = [line for line in text.splitlines() if line.strip()]
        summary = lines[-1] if job.exit_code in (0, 1) and lines else ""
        note = ctx.t("data.no_problems") if job.exit_code == 0 and not found else summary
        head = ctx.t("data.found_errors", code=job.exit_code) if job.exit_code == 1 else job_summary(ctx, job)
        return [*form.error_updates({}), f"{head}  \n{note}", job.command_line, gr.update(value=rows), "", text]

    def on_preview(*widget_values):
        _, errors, job, text = run("data preview", widget_values)
        if job is None:
            return [*form.error_updates(errors), errors_status(errors), gr.skip(), "", ""]
        return [*form.error_updates({}), job_summary(ctx, job), job.command_line, preview_html(text), text]

    def on_command(*widget_values):
        """Both command lines; the fields are marked with lint's errors (preview's own, such as a missing
        --model, are a comment under its line)."""
        values, errors = checked("data lint", widget_values)
        lines = [forms.command_line("data lint", values, ctx.host)]
        values, preview_errors = checked("data preview", widget_values)
        lines.append(forms.command_line("data preview", values, ctx.host))
        lines += [f"# {message}" for flag, message in preview_errors.items() if flag not in errors]
        return [*form.error_updates(errors), errors_status(errors) if errors else "", "\n".join(lines)]

    outputs = [*form.error_components, status]
    form.show_errors(lint_btn.click(on_lint, form.components, [*outputs, command, problems, preview, log]))
    form.show_errors(preview_btn.click(on_preview, form.components, [*outputs, command, preview, log]))
    form.show_errors(command_btn.click(on_command, form.components, [*outputs, command]))
