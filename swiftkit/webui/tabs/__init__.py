"""The web UI's tabs, one module each: ``LABELS`` (key -> (English, Chinese)) and ``build(ctx)``, which adds the
tab's components inside the ``gr.Tab`` that :func:`swiftkit.webui.app.build_app` opens.

:class:`FlagForm` is the form the tabs share: one widget per flag of one or more commands, made from
:func:`swiftkit.webui.forms.field_specs` (so a new flag appears without UI code), the chosen basic flags open
and the others under a collapsed "Advanced" accordion, grouped as ``--help`` groups them. Each widget has an
error line under it that :meth:`FlagForm.error_updates` fills from :func:`swiftkit.webui.forms.validate`.

:class:`JobPanel` is the run/stop/job-list/log part of the tabs that run one command and show what it wrote
(Evaluate, Quantize / Export).

The pickers of training runs (:func:`adapter_picker`, :func:`run_choices`), the empty-means-free port box
(:func:`port_box`) and the deploy flags of a server form (:func:`server_values`) serve the Chat, Evaluate,
Export and Deploy tabs.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import Context

from swiftkit.webui import forms, i18n, jobs, servers
from swiftkit.webui.context import WebContext
from swiftkit.webui.forms import FieldSpec
from swiftkit.webui.jobs import Job

LABELS = {
    "job.running": ("running", "运行中"),
    "job.finished": ("finished", "已完成"),
    "job.failed": ("failed", "失败"),
    "job.stopped": ("stopped", "已停止"),
    "job.summary": ("**{title}** {status} (exit status {code}), job `{id}`", "**{title}** {status}（退出码 {code}），"
                    "任务 `{id}`"),
    "picker.port_info": ("Empty: a free port is chosen when the server starts.", "留空：启动服务时自动选择空闲端口。"),
    "picker.adapters_info": ("Training runs (their last checkpoint) and checkpoints found in the output folders; "
                             "type a path or NAME=PATH for others.",
                             "输出目录中找到的训练结果（取最后一个检查点）与检查点；其他请输入路径或 NAME=PATH。"),
}
i18n.register(LABELS)

COLUMNS = 3  # widgets per row
UNSET = ""  # the choice that leaves an optional flag unset (its default, None)

Widget = Callable[[FieldSpec, str], gr.components.Component]  # (spec, elem_id) -> a component


def _text(value: Any) -> str:
    """A flag value as a command line writes it (true/false, the shortest exact float)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def widget_value(spec: FieldSpec, value: Any) -> Any:
    """``value`` (a flag value) as ``spec``'s default widget holds it: text for text boxes, a bool for
    checkboxes, the choice's text for dropdowns."""
    if spec.kind == "bool":
        return bool(value)
    if value is None:
        return UNSET
    if spec.kind == "list":
        return shlex.join(_text(v) for v in value)
    if spec.kind == "dict" and isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return _text(value)


def default_widget(spec: FieldSpec, elem_id: str) -> gr.components.Component:
    """The widget of a flag: a checkbox (true/false), a dropdown (choices; with an empty choice when the
    default is unset) or a text box (numbers, text, space-separated lists, JSON objects)."""
    common = dict(label=spec.name, info=spec.help, elem_id=elem_id)
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(spec.default), **common)
    if spec.kind == "choice":
        choices = [(c, c) for c in spec.choices]
        if spec.default is None:
            choices.insert(0, ("(unset)", UNSET))
        return gr.Dropdown(choices=choices, value=widget_value(spec, spec.default), **common)
    return gr.Textbox(value=widget_value(spec, spec.default), lines=1, max_lines=4, **common)


def model_picker(ctx: WebContext) -> Widget:
    """A searchable dropdown of the registered models that also takes a hub id or a local folder."""
    names = sorted(name for name, _ in ctx.host.registries.models.items())

    def make(spec: FieldSpec, elem_id: str):
        return gr.Dropdown(choices=names, value=spec.default, allow_custom_value=True, filterable=True,
                           label=spec.name, info=spec.help, elem_id=elem_id)

    return make


def dataset_picker(ctx: WebContext) -> Widget:
    """A searchable multi-choice dropdown of the registered datasets that also takes paths and hub ids."""
    names = sorted(name for name, _ in ctx.host.registries.datasets.items())

    def make(spec: FieldSpec, elem_id: str):
        return gr.Dropdown(choices=names, value=list(spec.default or []), multiselect=True, allow_custom_value=True,
                           filterable=True, label=spec.name, info=spec.help, elem_id=elem_id)

    return make


def job_summary(ctx: WebContext, job: Job) -> str:
    """One line for a job: its title, status, exit status and id."""
    code = "-" if job.exit_code is None else job.exit_code
    status = ctx.t(f"job.{job.status}")
    return ctx.t("job.summary", title=job.title, status=status, code=code, id=job.id) + \
        (f" ({job.note})" if job.note else "")


# Puts each message of a form's error box ({"flag": "message"} as JSON) at the bottom of its widget
# (``PREFIX-FLAG``) as ``<div id="PREFIX-FLAG-error">``; waits a moment for widgets that are still being
# drawn (the Advanced accordion opens in the same step).
SHOW_ERRORS_JS = """
(errors) => {
  const prefix = %s;
  document.querySelectorAll(`[data-swk-form="${prefix}"]`).forEach((e) => e.remove());
  const pending = Object.entries(JSON.parse(errors || "{}")).filter(([flag]) => flag);
  const place = (tries) => {
    for (const [flag, message] of pending.splice(0)) {
      const field = document.getElementById(`${prefix}-${flag}`);
      if (!field) { pending.push([flag, message]); continue; }
      const line = document.createElement("div");
      line.id = `${prefix}-${flag}-error`;
      line.className = "swk-field-error";
      line.dataset.swkForm = prefix;
      line.textContent = `\u26a0 ${message}`;
      field.appendChild(line);
    }
    if (pending.length && tries > 0) setTimeout(() => place(tries - 1), 100);
  };
  place(30);
}
"""


class FlagForm:
    """Widgets for the flags of ``commands`` (their union; a flag only some of them have is shown while
    one of those is selected, see :meth:`visibility_updates`).

    ``basic`` flags are shown open in that order, the rest under "Advanced"; ``widgets`` replaces the
    default widget of some flags (a model picker, a dataset dropdown). Components are built when the
    form is created, inside the caller's ``gr.Blocks`` context, showing the first command's flags.
    Widget ids are ``PREFIX-FLAG``.

    Validation messages go under their widgets through one hidden box and a line of browser script
    (:meth:`show_errors`) rather than one component per flag: Gradio's page looks each output of an
    event up in the whole component tree, so 170 error lines as outputs made every click take seconds.
    """

    def __init__(self, commands: Sequence[str], host, prefix: str, lang: str, basic: Sequence[str],
                 widgets: dict[str, Widget] | None = None):
        self.commands = tuple(commands)
        self.host = host
        self.prefix = prefix
        self.specs: dict[str, FieldSpec] = {}
        self.flags_of: dict[str, set[str]] = {}
        for command in self.commands:
            specs = forms.field_specs(command, host)
            self.flags_of[command] = {s.name for s in specs}
            for spec in specs:
                self.specs.setdefault(spec.name, spec)
        self.names = list(self.specs)
        everywhere = set.intersection(*self.flags_of.values())
        self.inputs: dict[str, gr.components.Component] = {}
        self.initial: dict[str, Any] = {}  # what each widget showed first (the flag's default)
        self.toggled: list[tuple[Any, set[str]]] = []  # (section or widget, the flags it holds): shown per command
        self.shown = self.flags_of[self.commands[0]]
        widgets = widgets or {}
        self.custom = set(widgets)  # flags whose widget holds the value itself (a list stays a list)
        basic = [name for name in basic if name in self.specs]
        rest = [name for name in self.names if name not in basic]
        self._section(basic, widgets, everywhere)
        with gr.Accordion(i18n.t("common.advanced", lang), open=False, elem_id=f"{prefix}-advanced") as advanced:
            groups: dict[str, list[str]] = {}
            for name in rest:
                groups.setdefault(self.specs[name].group, []).append(name)
            for group, names in groups.items():
                self._section(names, widgets, everywhere, title=group)
        self.advanced = advanced
        self.advanced_names = set(rest)
        self.error_box = gr.Textbox(visible="hidden", elem_id=f"{prefix}-errors")

    def _section(self, names: list[str], widgets: dict[str, Widget], everywhere: set[str], title: str = "") -> None:
        """A group of widgets; the whole group is toggled when none of its flags is in every command, else
        the widgets that are not."""
        whole = not set(names) & everywhere
        with gr.Column(visible=bool(set(names) & self.shown) or not names) as box:
            if title:
                gr.Markdown(f"**{title}**")
            for start in range(0, len(names), COLUMNS):
                with gr.Row(equal_height=False):
                    for name in names[start:start + COLUMNS]:
                        self._field(name, widgets.get(name, default_widget), toggled=not whole)
        if whole and names:
            self.toggled.append((box, set(names)))

    def _field(self, name: str, make: Widget, toggled: bool) -> None:
        """One widget; ``toggled``: shown or hidden on its own when the command changes (not its section)."""
        spec = self.specs[name]
        widget = make(spec, f"{self.prefix}-{name}")
        if toggled and len({name in flags for flags in self.flags_of.values()}) > 1:
            self.toggled.append((widget, {name}))
            widget.visible = name in self.shown
        self.inputs[name] = widget
        self.initial[name] = widget.value

    # -- values ------------------------------------------------------------------------------------------

    @property
    def components(self) -> list[gr.components.Component]:
        """The input widgets, in the order :meth:`values` takes their values."""
        return [self.inputs[name] for name in self.names]

    def values(self, command: str, widget_values: Sequence[Any]) -> dict[str, Any]:
        """``command``'s flags whose widgets changed from the default, as the widgets hold them
        (:func:`forms.clean_values` types them; it would drop the unchanged ones too, one flag at a time)."""
        flags = self.flags_of[command]
        return {name: value for name, value in zip(self.names, widget_values)
                if name in flags and value != self.initial[name]}

    # -- errors and visibility ---------------------------------------------------------------------------

    @property
    def error_components(self) -> list:
        """The hidden error box, then the Advanced accordion (opened when it holds an error)."""
        return [self.error_box, self.advanced]

    def error_updates(self, errors: dict[str, str]) -> list:
        """Updates for :attr:`error_components`: the messages by flag, the accordion opened when needed."""
        return [json.dumps(errors, ensure_ascii=False),
                gr.update(open=True) if self.advanced_names & set(errors) else gr.skip()]

    def show_errors(self, event) -> None:
        """After ``event`` (which updated :attr:`error_components`), put each message under its widget and
        remove the old ones."""
        event.then(None, self.error_box, None, js=SHOW_ERRORS_JS % json.dumps(self.prefix))

    @property
    def visibility_components(self) -> list:
        """The sections and widgets whose visibility depends on the selected command."""
        return [component for component, _ in self.toggled]

    def visibility_updates(self, command: str) -> list:
        """Updates for :attr:`visibility_components`: only ``command``'s flags shown."""
        flags = self.flags_of[command]
        return [gr.update(visible=bool(names & flags)) for _, names in self.toggled]


# -- pickers and server flags the tabs share ----------------------------------------------------------------


def run_choices(ctx) -> list[tuple[str, str]]:
    """``(label, path)`` for each training run found under the working folder's output roots (newest first)
    and each of its checkpoints."""
    out = []
    for run in jobs.runs(ctx.output_roots()):
        loss = f", loss {run.loss:.4g}" if run.loss is not None else ""
        state = "" if run.finished else ", unfinished"
        out.append((f"{run.run_dir.name} ({run.command} {run.train_type or ''}, {run.steps_done} steps{loss}{state})",
                    str(run.run_dir)))
        checkpoints = sorted((p for p in run.run_dir.glob("checkpoint-*") if jobs.CHECKPOINT_RE.match(p.name)),
                             key=lambda p: int(p.name.rsplit("-", 1)[1]))
        out += [(f"{run.run_dir.name}/{p.name}", str(p)) for p in checkpoints]
    return out


def adapter_picker(ctx, extra: tuple[tuple[str, str], ...] = ()):
    """A widget maker for a list flag of runs (``--adapters``, ``--compare``): the runs and checkpoints of
    :func:`run_choices` (after ``extra`` choices), or any path typed in."""

    def make(spec: FieldSpec, elem_id: str):
        return gr.Dropdown(choices=[*extra, *run_choices(ctx)], value=[], multiselect=True, allow_custom_value=True,
                           filterable=True, label=spec.name,
                           info=f"{i18n.t('picker.adapters_info', ctx.lang)} {spec.help}", elem_id=elem_id)

    return make


def refresh_runs(ctx, extra: tuple[tuple[str, str], ...] = ()):
    """An update of an :func:`adapter_picker` dropdown with the runs found now."""
    return gr.update(choices=[*extra, *run_choices(ctx)])


def when_shown(fn, outputs) -> None:
    """Run ``fn`` (no inputs) for ``outputs`` when the page loads and whenever the tab being built is selected
    (its lists then show runs that finished meanwhile)."""
    gr.on(None, fn, None, outputs, show_progress="hidden")
    tab = Context.block  # the gr.Tab that app.build_app opened around build(ctx)
    if isinstance(tab, gr.Tab):
        tab.select(fn, None, outputs, show_progress="hidden")


def port_box(ctx):
    """A widget maker for ``--port``: empty (the default here) means a free port chosen at start."""

    def make(spec: FieldSpec, elem_id: str):
        return gr.Textbox(value="", placeholder=i18n.t("picker.port_info", ctx.lang), label=spec.name,
                          info=f"{i18n.t('picker.port_info', ctx.lang)} {spec.help}", elem_id=elem_id)

    return make


def served_adapters(entries) -> list[str]:
    """``--adapters`` entries each with a distinct served name: ``NAME=PATH`` kept, a run folder named after
    itself, a checkpoint of a run ``RUN-checkpoint-N`` (several runs all have a ``checkpoint-2``)."""
    out, names = [], set()
    for entry in entries or []:
        entry = str(entry).strip()
        if not entry:
            continue
        name, sep, path = entry.partition("=")
        if not sep or Path(entry).exists():
            path = entry
            folder = Path(entry.rstrip("/"))
            name = f"{folder.parent.name}-{folder.name}" if jobs.CHECKPOINT_RE.match(folder.name) \
                and jobs.RUN_DIR_RE.match(folder.parent.name) else folder.name
            base, n = name, 2
            while name in names:
                name, n = f"{base}-{n}", n + 1
        names.add(name)
        out.append(f"{name}={path}")
    return out


def server_values(form: FlagForm, widget_values) -> dict:
    """The deploy flags of a server form: adapters named (:func:`served_adapters`), an empty port filled with a
    free one."""
    values = form.values("deploy", widget_values)
    values["adapters"] = served_adapters(values.get("adapters"))
    if not str(values.get("port") or "").strip():
        values["port"] = servers.free_port(servers.LOOPBACK)
    return values


def server_label(values: dict) -> str:
    """A short name for a server: the served name of its first adapter, else its model's last path part."""
    adapters = values.get("adapters") or []
    if adapters:
        return str(adapters[0]).partition("=")[0]
    return Path(str(values.get("model", "")).rstrip("/")).name


# -- a command's jobs: run, stop, pick one, its status, command line and log ---------------------------------

POLL_SECONDS = 2.0


class JobPanel:
    """Run / Stop / Refresh-runs buttons, the list of ``commands``' jobs, the shown job's status, command line
    and log tail, and a timer that polls only while the shown job runs (an idle page sends nothing). Elements
    are ``PREFIX-run``, ``PREFIX-stop``, ``PREFIX-refresh``, ``PREFIX-jobs``, ``PREFIX-status``, ``PREFIX-command``
    and ``PREFIX-log``; the labels ``PREFIX.run``, ``PREFIX.jobs`` and ``PREFIX.none`` are the tab's. The tab adds
    its result widgets below and calls :meth:`wire`."""

    def __init__(self, ctx: WebContext, form: FlagForm, command: str, prefix: str,
                 commands: Sequence[str] | None = None):
        self.ctx, self.form, self.command, self.prefix = ctx, form, command, prefix
        self.commands = tuple(commands or (command,))
        t = lambda key: i18n.t(key, ctx.lang)  # noqa: E731
        with gr.Row():
            self.run = gr.Button(t(f"{prefix}.run"), variant="primary", elem_id=f"{prefix}-run")
            self.stop = gr.Button(t("common.stop"), variant="stop", elem_id=f"{prefix}-stop")
            self.refresh = gr.Button(t("common.refresh_runs"), size="sm", elem_id=f"{prefix}-refresh")
        self.chosen = gr.Dropdown(choices=[], label=t(f"{prefix}.jobs"), elem_id=f"{prefix}-jobs")
        self.status = gr.Markdown(elem_id=f"{prefix}-status")
        self.command_line = gr.Textbox(label=t("common.command"), interactive=False, elem_id=f"{prefix}-command",
                                       buttons=["copy"])
        with gr.Accordion(t("common.log"), open=True):
            self.log = gr.Textbox(lines=10, max_lines=10, autoscroll=True, show_label=False, interactive=False,
                                  elem_id=f"{prefix}-log")
        self.ticker = gr.Timer(POLL_SECONDS, active=False)

    def jobs(self) -> list[Job]:
        return [job for job in self.ctx.jobs.list() if job.command in self.commands]

    def wire(self, results: Sequence, ended: Callable[[Job], tuple[dict, str]]) -> None:
        """Connect the buttons, the job list and the timer. ``results`` are the tab's widgets for what a job
        wrote, empty while no ended job is shown; ``ended(job)`` gives ``({widget: value}, note)`` for an ended
        job (the note, when not empty, follows its status)."""
        ctx, form = self.ctx, self.form
        shown = [self.chosen, self.status, self.command_line, self.log, *results, self.ticker]
        blank = dict.fromkeys(results)

        def view(job_id):
            found = self.jobs()
            job = next((j for j in found if j.id == job_id), found[0] if found else None)
            choices = [(f"{j.id} · {j.status}", j.id) for j in found]
            if job is None:
                return {self.chosen: gr.update(choices=choices, value=None),
                        self.status: i18n.t(f"{self.prefix}.none", ctx.lang), self.command_line: "", self.log: "",
                        **blank, self.ticker: gr.Timer(active=False)}
            filled, note = ({}, "") if job.running else ended(job)
            return {self.chosen: gr.update(choices=choices, value=job.id),
                    self.status: job_summary(ctx, job) + (f" — {note}" if note else ""),
                    self.command_line: job.command_line, self.log: ctx.jobs.log_tail(job.id, 60),
                    **blank, **filled, self.ticker: gr.Timer(active=job.running)}

        def poll(job_id):
            try:
                job = ctx.jobs.get(job_id) if job_id else None
            except KeyError:
                job = None
            if job is None:
                return {self.ticker: gr.Timer(active=False)}
            if job.running:
                return {self.status: job_summary(ctx, job), self.log: ctx.jobs.log_tail(job.id, 60)}
            return view(job.id)  # ended: what it wrote, and the timer stops

        def do_run(*widget_values):
            values = form.values(self.command, widget_values)
            errors = forms.validate(self.command, values, ctx.host)
            update = dict(zip(form.error_components, form.error_updates(errors)))
            if errors:
                return update
            job = ctx.jobs.start(self.command, values, title=self.command)
            return {**update, **view(job.id)}

        def do_stop(job_id):
            if job_id:
                ctx.jobs.stop(job_id, timeout=30)
            return view(job_id)

        form.show_errors(self.run.click(do_run, form.components, [*form.error_components, *shown]))
        self.stop.click(do_stop, self.chosen, shown)
        self.chosen.input(view, self.chosen, shown)
        gr.on(None, lambda: view(None), None, shown)
        self.ticker.tick(poll, self.chosen, shown, show_progress="hidden")

    def refresh_pickers(self, pickers: dict[str, tuple[tuple[str, str], ...]]) -> None:
        """Refresh the run pickers ``name -> extra choices`` of the form on Refresh runs and when the tab is
        shown."""
        for name, extra in pickers.items():
            update = lambda extra=extra: refresh_runs(self.ctx, extra)  # noqa: E731
            self.refresh.click(update, None, self.form.inputs[name])
            when_shown(update, self.form.inputs[name])
