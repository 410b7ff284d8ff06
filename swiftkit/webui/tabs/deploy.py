"""The Deploy tab: start and stop OpenAI-compatible servers (`swiftkit deploy` jobs) for a model or a run.

A server starts on the port of its form (empty: a free one) and the tab waits until ``/v1/models`` answers,
then shows its URL, a ``curl`` command and an ``openai`` snippet that work as shown (they name a served
model and carry the API key the way the server reads it). Servers this UI started, or found running from an
earlier UI process, are listed and stopped with "Stop", and when the UI process exits.
"""

from __future__ import annotations

import json
import shlex
import time

import gradio as gr

from swiftkit.recipes.deploy import API_KEY_ENV
from swiftkit.webui import forms, i18n, servers
from swiftkit.webui.tabs import (
    FlagForm,
    adapter_picker,
    job_summary,
    model_picker,
    port_box,
    refresh_runs,
    server_label,
    server_values,
    when_shown,
)

LABELS = {
    "deploy.start": ("Start server", "启动服务"),
    "deploy.stop": ("Stop server", "停止服务"),
    "deploy.refresh": ("Refresh", "刷新"),
    "deploy.servers": ("Servers", "服务列表"),
    "deploy.none": ("No server is running.", "没有正在运行的服务。"),
    "deploy.starting": ("Starting: waiting for {url} to answer …", "启动中：等待 {url} 响应 …"),
    "deploy.serving": ("Serving {models} at {url}", "正在服务 {models}，地址 {url}"),
    "deploy.failed": ("The server did not start: see its log.", "服务未能启动：请查看日志。"),
    "deploy.url": ("URL", "地址"),
    "deploy.curl": ("curl", "curl 示例"),
    "deploy.python": ("openai (Python)", "openai（Python）"),
    "deploy.log": ("Server log", "服务日志"),
    "deploy.prompt": ("Hello! Who are you?", "你好！你是谁？"),
}
i18n.register(LABELS)

DEPLOY_TITLE = "deploy: "  # the title prefix of the Deploy tab's server jobs
START_TIMEOUT = 600.0
POLL = 0.5
SNIPPET_MAX_TOKENS = 32


def snippet_model(models) -> str:
    """The model the snippets ask: the first adapter, else the base model."""
    tuned = [m["id"] for m in models or [] if m.get("parent")]
    return tuned[0] if tuned else (models[0]["id"] if models else "default")


def _key_source(argv: list[str]) -> tuple[str, str | None]:
    """How the server of ``argv`` gets its key: ("flag", key), ("file", path), ("env", None) or ("none", None)."""
    key = servers.flag_value(argv, "--api_key")
    if key:
        return "flag", key
    path = servers.flag_value(argv, "--api_key_file")
    if path:
        return "file", path
    return ("env", None) if servers.api_key(argv) else ("none", None)


def curl_command(argv: list[str], model: str, prompt: str) -> str:
    """A ``curl`` command that asks the server of ``argv`` for a chat completion from ``model``."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}],
                       "max_tokens": SNIPPET_MAX_TOKENS}, ensure_ascii=False)
    lines = [f"curl {servers.base_url(argv)}/v1/chat/completions", "-H 'Content-Type: application/json'"]
    kind, value = _key_source(argv)
    if kind == "flag":
        lines.append(f"-H {shlex.quote(f'Authorization: Bearer {value}')}")
    elif kind == "file":
        lines.append(f'-H "Authorization: Bearer $(head -n 1 {shlex.quote(value)})"')
    elif kind == "env":
        lines.append(f'-H "Authorization: Bearer ${API_KEY_ENV}"')
    lines.append(f"-d {shlex.quote(body)}")
    return " \\\n  ".join(lines)


def python_snippet(argv: list[str], model: str, prompt: str) -> str:
    """Python with the ``openai`` client that asks the server of ``argv`` for a chat completion from ``model``."""
    kind, value = _key_source(argv)
    imports = ["import os", ""] if kind == "env" else []
    key = {"flag": repr(value), "file": f"open({value!r}).readline().strip()",
           "env": f"os.environ[{API_KEY_ENV!r}]", "none": repr("none")}[kind]
    return "\n".join([
        *imports,
        "from openai import OpenAI",
        "",
        f"client = OpenAI(base_url={servers.base_url(argv) + '/v1'!r}, api_key={key})",
        f"reply = client.chat.completions.create(model={model!r}, max_tokens={SNIPPET_MAX_TOKENS},",
        f"                                       messages=[{{'role': 'user', 'content': {prompt!r}}}])",
        "print(reply.choices[0].message.content)",
        "",
    ])


def build(ctx) -> None:
    lang = ctx.lang
    owner = servers.ServerOwner(ctx.jobs, DEPLOY_TITLE)
    owner.adopt_running()  # servers an earlier UI left running are this UI's to show and stop
    form = FlagForm(["deploy"], ctx.host, "deploy", lang, basic=forms.BASIC_FLAGS["deploy"],
                    widgets={"model": model_picker(ctx), "adapters": adapter_picker(ctx), "port": port_box(ctx)})
    with gr.Row():
        start = gr.Button(i18n.t("deploy.start", lang), variant="primary", elem_id="deploy-start")
        stop = gr.Button(i18n.t("deploy.stop", lang), variant="stop", elem_id="deploy-stop")
        refresh = gr.Button(i18n.t("deploy.refresh", lang), size="sm", elem_id="deploy-refresh")

    def server_choices():
        return [(f"{servers.base_url(job.argv)} · {job.title[len(DEPLOY_TITLE):]} · {job.id}", job.id)
                for job in owner.running()]

    chosen = gr.Dropdown(choices=server_choices(), label=i18n.t("deploy.servers", lang), elem_id="deploy-servers")
    status = gr.Markdown(elem_id="deploy-status")
    command = gr.Textbox(label=i18n.t("common.command", lang), interactive=False, elem_id="deploy-command",
                         buttons=["copy"])
    url = gr.Textbox(label=i18n.t("deploy.url", lang), interactive=False, elem_id="deploy-url", buttons=["copy"])
    curl = gr.Code(label=i18n.t("deploy.curl", lang), language="shell", interactive=False, elem_id="deploy-curl")
    python = gr.Code(label=i18n.t("deploy.python", lang), language="python", interactive=False, elem_id="deploy-python")
    with gr.Accordion(i18n.t("deploy.log", lang), open=False):
        log = gr.Textbox(lines=12, max_lines=12, autoscroll=True, show_label=False, interactive=False,
                         elem_id="deploy-log")

    def view(job_id):
        """Updates that show server ``job_id`` (or the newest running one; nothing when there is none)."""
        running = owner.running()
        job = next((j for j in running if j.id == job_id), None)
        if job is None and job_id:
            try:
                job = ctx.jobs.get(job_id)
            except KeyError:
                job = None
        job = job or (running[0] if running else None)
        choices = server_choices()
        if job is None:
            return {chosen: gr.update(choices=choices, value=None), status: i18n.t("deploy.none", lang),
                    command: "", url: "", curl: "", python: "", log: ""}
        address = servers.base_url(job.argv)
        models = servers.served_models(address, servers.api_key(job.argv)) if job.running else None
        if models is not None:
            text = i18n.t("deploy.serving", lang, models=", ".join(m["id"] for m in models), url=address)
        elif job.running:
            text = i18n.t("deploy.starting", lang, url=address)
        else:
            text = i18n.t("deploy.failed", lang) if job.status == "failed" else ""
        model, prompt = snippet_model(models), i18n.t("deploy.prompt", lang)
        return {chosen: gr.update(choices=choices, value=job.id if job.running else None),
                status: f"{job_summary(ctx, job)} — {text}", command: job.command_line,
                url: address + "/v1" if models is not None else "",
                curl: curl_command(job.argv, model, prompt) if models is not None else "",
                python: python_snippet(job.argv, model, prompt) if models is not None else "",
                log: ctx.jobs.log_tail(job.id, 60)}

    def do_start(*widget_values):
        values = server_values(form, widget_values)
        errors = forms.validate("deploy", values, ctx.host)
        yield dict(zip(form.error_components, form.error_updates(errors)))
        if errors:
            return
        clean = forms.clean_values("deploy", values, ctx.host)
        job = owner.start(values, title=server_label(clean))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            job = ctx.jobs.get(job.id)
            update = view(job.id)
            ready = servers.served_models(servers.base_url(job.argv), servers.api_key(job.argv)) is not None
            yield update
            if ready or not job.running or time.monotonic() > deadline:
                return
            time.sleep(POLL)

    def do_stop(job_id):
        if job_id:
            owner.stop(job_id)
        return view(None)

    shown = [chosen, status, command, url, curl, python, log]
    form.show_errors(start.click(do_start, form.components, [*form.error_components, *shown]))
    stop.click(do_stop, chosen, shown)
    chosen.input(view, chosen, shown)
    refresh.click(view, chosen, shown)
    refresh.click(lambda: refresh_runs(ctx), None, form.inputs["adapters"])
    gr.on(None, lambda: view(None), None, shown)
    when_shown(lambda: refresh_runs(ctx), form.inputs["adapters"])
