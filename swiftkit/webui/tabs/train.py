"""The Train tab: ``swiftkit sft|pt|rlhf`` from a form, as jobs that outlive the page and the UI.

The form holds every flag of the three commands (a flag only rlhf has is shown while rlhf is chosen); the
key hyperparameters are open, the rest under "Advanced". **Plan** runs the command with ``--dry_run`` and
shows what it prints; **Command** shows the command line and YAML config the job runs (the exact argv:
jobs add the ``graceful_exit`` callback, so Stop leaves a resumable checkpoint); **Start** / **Stop** start
and stop a job. While the shown job runs, a timer shows its state, the tail of its log and its training loss as
it is logged; the runs list reads the output folders, and **Resume** continues a run from its last checkpoint
(the flags its args.json records as given, and ``--resume_from_checkpoint``).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import gradio as gr
import pandas as pd

from swiftkit.webui import forms, i18n, jobs
from swiftkit.webui.context import WebContext
from swiftkit.webui.jobs import TRAINING_COMMANDS, Job, RunInfo
from swiftkit.webui.tabs import FlagForm, dataset_picker, job_summary, model_picker

LABELS = {
    "train.intro": (
        "Fine-tune with `swiftkit sft`, `pt` or `rlhf`. Jobs keep running when the page closes or the UI "
        "restarts; **Stop** saves a checkpoint that **Resume** continues.",
        "使用 `swiftkit sft`、`pt` 或 `rlhf` 进行训练。关闭页面或重启界面后任务仍在运行；**停止** 会保存检查点，"
        "之后可用 **继续训练** 接着训练。",
    ),
    "train.command": ("Command", "命令"),
    "train.plan": ("Plan (dry run)", "计划（试运行）"),
    "train.show_command": ("Show command", "显示命令"),
    "train.start": ("Start", "开始训练"),
    "train.stop": ("Stop", "停止"),
    "train.cmdline": ("Command line (run it in {workdir})", "命令行（在 {workdir} 中运行）"),
    "train.yaml": ("YAML config", "YAML 配置"),
    "train.plan_output": ("Plan", "训练计划"),
    "train.job": ("Job", "任务"),
    "train.no_job": ("No training job yet.", "还没有训练任务。"),
    "train.log": ("Log (last lines)", "日志（最后几行）"),
    "train.loss": ("Training loss", "训练损失"),
    "train.loss_caption": ("{n} points, last loss {loss:.4f} at step {step}", "{n} 个点，第 {step} 步损失 {loss:.4f}"),
    "train.no_loss": ("No loss logged yet.", "尚未记录损失。"),
    "train.runs": ("Runs", "训练记录"),
    "train.run": ("Run", "训练记录"),
    "train.refresh": ("Refresh", "刷新"),
    "train.resume": ("Resume", "继续训练"),
    "train.run_dir": ("run folder: `{path}`", "输出目录：`{path}`"),
    "train.started": ("Started job `{id}`.", "已启动任务 `{id}`。"),
    "train.no_run": ("Choose a run first.", "请先选择一条训练记录。"),
    "run.finished": ("finished", "已完成"),
    "run.running": ("running", "运行中"),
    "run.incomplete": ("incomplete", "未完成"),
    "runs.col.run": ("run", "目录"),
    "runs.col.command": ("command", "命令"),
    "runs.col.model": ("model", "模型"),
    "runs.col.train_type": ("train_type", "训练方式"),
    "runs.col.steps": ("steps", "步数"),
    "runs.col.loss": ("loss", "损失"),
    "runs.col.checkpoint": ("last checkpoint", "最新检查点"),
    "runs.col.state": ("state", "状态"),
}
i18n.register(LABELS)

TICK_SECONDS = 1.0  # how often the page asks for the job's state, log and loss
LOG_LINES = 200
PLAN_TIMEOUT = 600.0


def basic_flags() -> list[str]:
    """The flags shown open: the key hyperparameters of rlhf, sft and pt, in that order."""
    return list(dict.fromkeys(f for command in ("rlhf", *TRAINING_COMMANDS) for f in forms.BASIC_FLAGS[command]))


def relative(ctx: WebContext, path: Path | None) -> str:
    """``path`` relative to the working folder when it is inside it."""
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(ctx.workdir))
    except ValueError:
        return str(path)


def training_jobs(ctx: WebContext) -> list[Job]:
    """The training jobs (not dry runs), newest first."""
    return [j for j in ctx.jobs.list() if j.command in TRAINING_COMMANDS and not j.values.get("dry_run")]


def loss_frame(points: list[tuple[int, float]]) -> pd.DataFrame:
    return pd.DataFrame({"step": [s for s, _ in points], "loss": [v for _, v in points]})


def run_state(ctx: WebContext, run: RunInfo, running_dirs: set[Path]) -> str:
    if run.run_dir.resolve() in running_dirs:
        return ctx.t("run.running")
    return ctx.t("run.finished") if run.finished else ctx.t("run.incomplete")


def runs_table(ctx: WebContext) -> tuple[list[list], list[tuple[str, str]]]:
    """The runs under the output folders: table rows and dropdown choices (label, run folder)."""
    running = {j.run_dir.resolve() for j in training_jobs(ctx) if j.running and j.run_dir is not None}
    rows, choices = [], []
    for run in jobs.runs(ctx.output_roots()):
        state = run_state(ctx, run, running)
        name = relative(ctx, run.run_dir)
        loss = "" if run.loss is None else f"{run.loss:.4f}"
        rows.append([name, run.command, run.model or "", run.train_type or "", run.steps_done, loss,
                     relative(ctx, run.last_checkpoint), state])
        choices.append((f"{name} ({state})", str(run.run_dir)))
    return rows, choices


def build(ctx: WebContext) -> None:
    gr.Markdown(ctx.t("train.intro"))
    command = gr.Radio(list(TRAINING_COMMANDS), value=TRAINING_COMMANDS[0], label=ctx.t("train.command"),
                       elem_id="train-command")
    form = FlagForm(TRAINING_COMMANDS, ctx.host, "train", ctx.lang, basic_flags(),
                    widgets={"model": model_picker(ctx), "dataset": dataset_picker(ctx)})
    with gr.Row():
        plan_btn = gr.Button(ctx.t("train.plan"), elem_id="train-plan-button")
        command_btn = gr.Button(ctx.t("train.show_command"), elem_id="train-show-command")
        start_btn = gr.Button(ctx.t("train.start"), variant="primary", elem_id="train-start")
        stop_btn = gr.Button(ctx.t("train.stop"), variant="stop", elem_id="train-stop")
    status = gr.Markdown(elem_id="train-status")
    cmdline = gr.Textbox(label=ctx.t("train.cmdline", workdir=ctx.workdir), lines=2, interactive=False,
                         buttons=["copy"], elem_id="train-cmdline")
    with gr.Accordion(ctx.t("train.yaml"), open=False):
        yaml_box = gr.Code(language="yaml", interactive=False, elem_id="train-yaml")
    plan = gr.Textbox(label=ctx.t("train.plan_output"), lines=6, max_lines=40, interactive=False, visible=False,
                      elem_id="train-plan")
    job_dd = gr.Dropdown(choices=[], value=None, label=ctx.t("train.job"), elem_id="train-job")
    job_status = gr.Markdown(ctx.t("train.no_job"), elem_id="train-job-status")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            log = gr.Textbox(label=ctx.t("train.log"), lines=14, max_lines=14, interactive=False, autoscroll=True,
                             elem_id="train-log")
        with gr.Column(scale=2):
            loss_plot = gr.LinePlot(loss_frame([]), x="step", y="loss", label=ctx.t("train.loss"), height=300,
                                    elem_id="train-loss")
            loss_caption = gr.Markdown(ctx.t("train.no_loss"), elem_id="train-loss-caption")
    gr.Markdown(f"### {ctx.t('train.runs')}")
    headers = [ctx.t(f"runs.col.{c}") for c in ("run", "command", "model", "train_type", "steps", "loss",
                                                "checkpoint", "state")]
    runs_df = gr.Dataframe(headers=headers, value=[], interactive=False, wrap=True, elem_id="train-runs",
                           column_widths=["22%", "7%", "21%", "8%", "6%", "7%", "21%", "8%"])
    with gr.Row():
        run_dd = gr.Dropdown(choices=[], value=None, label=ctx.t("train.run"), elem_id="train-run", scale=3)
        refresh_btn = gr.Button(ctx.t("train.refresh"), elem_id="train-refresh", scale=1)
        resume_btn = gr.Button(ctx.t("train.resume"), elem_id="train-resume", scale=1)
    # Two timers, so that an idle page sends nothing: `lists` fires once after the page loads (and again when a
    # job ends) to fill the job and run lists; `poll` runs while the shown job does, for its state, log and loss.
    lists = gr.Timer(0.5)
    poll = gr.Timer(TICK_SECONDS, active=False)
    shown: OrderedDict[tuple, list] = OrderedDict()  # (page session, job id) -> what its page shows of the job

    # -- the form ---------------------------------------------------------------------------------------

    def checked(name: str, widget_values) -> tuple[dict, dict]:
        values = form.values(name, widget_values)
        return values, forms.validate(name, values, ctx.host)

    def error_line(errors: dict) -> str:
        flags = ", ".join(f"--{flag}" for flag in errors if flag)
        lines = [ctx.t("common.errors", flags=flags)] if flags else []
        lines += [message for flag, message in errors.items() if not flag]
        return f"**{ctx.t('common.error_prefix')}**: " + "  \n".join(lines)

    def shown_command(name: str, values: dict) -> tuple[str, str]:
        run_values = jobs.job_values(name, values)
        return forms.command_line(name, run_values, ctx.host), forms.command_yaml(name, run_values, ctx.host)

    def on_command_change(name):
        return [*form.visibility_updates(name), *form.error_updates({})]

    form.show_errors(command.change(on_command_change, command,
                                    [*form.visibility_components, *form.error_components]))

    def on_show_command(name, *widget_values):
        values, errors = checked(name, widget_values)
        line, yaml_text = shown_command(name, values)
        return [*form.error_updates(errors), error_line(errors) if errors else "", line, yaml_text]

    def on_plan(name, *widget_values):
        values, errors = checked(name, widget_values)
        if errors:
            return [*form.error_updates(errors), error_line(errors), gr.skip(), gr.update(visible=False)]
        job = ctx.jobs.start(name, {**values, "dry_run": True}, title=f"{name} --dry_run")
        job = ctx.jobs.wait(job.id, PLAN_TIMEOUT)
        if job.running:
            job = ctx.jobs.stop(job.id, timeout=10)
        text = ctx.jobs.log_tail(job.id, 400)
        return [*form.error_updates({}), job_summary(ctx, job), job.command_line, gr.update(value=text, visible=True)]

    def on_start(name, *widget_values):
        values, errors = checked(name, widget_values)
        if errors:
            return [*form.error_updates(errors), error_line(errors), gr.skip(), gr.skip(), gr.skip()]
        return [*form.error_updates({}), *start(name, values)]

    def start(name: str, values: dict) -> list:
        """Start a training job: [status, command line, job dropdown, poll timer]."""
        model = values.get("model") or ""
        job = ctx.jobs.start(name, values, title=f"{name} {Path(str(model)).name}".strip())
        choices = [(job_label(j), j.id) for j in training_jobs(ctx)]
        return [ctx.t("train.started", id=job.id), job.command_line, gr.update(choices=choices, value=job.id),
                gr.Timer(active=True)]

    inputs = [command, *form.components]
    form_outputs = [*form.error_components, status]
    form.show_errors(command_btn.click(on_show_command, inputs, [*form_outputs, cmdline, yaml_box]))
    form.show_errors(plan_btn.click(on_plan, inputs, [*form_outputs, cmdline, plan]))
    form.show_errors(start_btn.click(on_start, inputs, [*form_outputs, cmdline, job_dd, poll]))

    def on_stop(job_id):
        if not job_id:
            return ctx.t("train.no_job")
        return job_summary(ctx, ctx.jobs.stop(job_id))

    stop_btn.click(on_stop, job_dd, status)

    def on_resume(run_dir):
        if not run_dir:
            return [ctx.t("train.no_run"), gr.skip(), gr.skip(), gr.skip()]
        info = jobs.run_info(Path(run_dir))
        return start(info.command, jobs.resume_values(info))

    resume_btn.click(on_resume, run_dd, [status, cmdline, job_dd, poll])

    # -- the job, its log and loss, the runs -------------------------------------------------------------

    def job_label(job: Job) -> str:
        return f"{job.id} · {job.title} · {ctx.t(f'job.{job.status}')}"

    def job_view(job: Job | None) -> list:
        """[job status, log, loss plot, loss caption] of ``job``."""
        if job is None:
            return [ctx.t("train.no_job"), "", loss_frame([]), ctx.t("train.no_loss")]
        points = jobs.loss_points(job.run_dir) if job.run_dir is not None else []
        text = job_summary(ctx, job)
        if job.run_dir is not None:
            text += "  \n" + ctx.t("train.run_dir", path=relative(ctx, job.run_dir))
        text += f"  \n`{job.command_line}`"
        caption = ctx.t("train.loss_caption", n=len(points), loss=points[-1][1], step=points[-1][0]) \
            if points else ctx.t("train.no_loss")
        return [text, ctx.jobs.log_tail(job.id, LOG_LINES), loss_frame(points), caption]

    def signature(job: Job) -> list:
        size = job.log_path.stat().st_size if job.log_path.exists() else 0
        logged = job.run_dir / "logging.jsonl" if job.run_dir is not None else None
        return [job.status, size, str(job.run_dir), logged.stat().st_size if logged and logged.exists() else 0]

    def remember(session: str, job: Job) -> None:
        shown[(session, job.id)] = signature(job)
        shown.move_to_end((session, job.id))
        while len(shown) > 256:
            shown.popitem(last=False)

    def on_poll(job_id, request: gr.Request):
        """[job status, log, plot, caption, poll timer, lists timer]: what changed of the shown job; when it has
        ended, the poll stops and the lists are read again."""
        try:
            job = ctx.jobs.get(job_id) if job_id else None
        except KeyError:
            job = None
        if job is None:
            return [gr.skip()] * 4 + [gr.Timer(active=False), gr.skip()]
        view = [gr.skip()] * 4
        if shown.get((request.session_hash, job.id)) != signature(job):
            view = job_view(job)
            remember(request.session_hash, job)
        if job.running:
            return [*view, gr.skip(), gr.skip()]
        return [*view, gr.Timer(active=False), gr.Timer(active=True)]

    def on_lists(job_id, run_dir, request: gr.Request):
        """[job dropdown, runs table, run dropdown, job status, log, plot, caption, poll timer, lists timer]: the
        jobs and runs read again, the chosen job (else the newest) shown, polled while it runs."""
        listed = training_jobs(ctx)
        ids = [j.id for j in listed]
        selected = job_id if job_id in ids else (ids[0] if ids else None)
        job = next((j for j in listed if j.id == selected), None)
        rows, choices = runs_table(ctx)
        run_dir = run_dir if run_dir in [v for _, v in choices] else None
        if job is not None:
            remember(request.session_hash, job)
        return [gr.update(choices=[(job_label(j), j.id) for j in listed], value=selected), gr.update(value=rows),
                gr.update(choices=choices, value=run_dir), *job_view(job),
                gr.Timer(active=job is not None and job.running), gr.Timer(active=False)]

    view_outputs = [job_status, log, loss_plot, loss_caption]
    poll.tick(on_poll, job_dd, [*view_outputs, poll, lists], show_progress="hidden")
    lists_outputs = [job_dd, runs_df, run_dd, *view_outputs, poll, lists]
    lists.tick(on_lists, [job_dd, run_dd], lists_outputs, show_progress="hidden")
    job_dd.input(on_lists, [job_dd, run_dd], lists_outputs, show_progress="hidden")
    refresh_btn.click(on_lists, [job_dd, run_dd], lists_outputs)
