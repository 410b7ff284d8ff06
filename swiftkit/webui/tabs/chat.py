"""The Chat tab: load a model with adapters in a `swiftkit deploy` job and chat with it, replies streamed.

"Load" starts ``swiftkit deploy`` (the flags of its form, a free local port, each adapter served under a
name) as a job and waits until ``/v1/models`` answers; replies come from that server through the
``openai`` client with ``stream=True``, shown token by token. Side by side sends each message to the base
model and to the tuned one. The server belongs to the UI: it is stopped on "Unload", when another model is
loaded and when the UI process exits; one left running by an earlier UI process is found (jobs are on disk)
and used.
"""

from __future__ import annotations

import time

import gradio as gr
import openai

from swiftkit.webui import forms, i18n, servers
from swiftkit.webui.tabs import (
    FlagForm,
    adapter_picker,
    model_picker,
    port_box,
    refresh_runs,
    server_label,
    server_values,
    when_shown,
)

LABELS = {
    "chat.server": ("Model and adapters", "模型与适配器"),
    "chat.load": ("Load", "加载"),
    "chat.unload": ("Unload", "卸载"),
    "chat.no_server": ("No model loaded.", "未加载模型。"),
    "chat.starting": ("Starting the server (job {job}) at {url} …", "正在启动服务（任务 {job}），地址 {url} …"),
    "chat.serving": ("Serving {models} at {url} (job {job}).", "正在服务 {models}，地址 {url}（任务 {job}）。"),
    "chat.ended": ("The server (job {job}) is {status}, exit code {code}: see its log.",
                   "服务（任务 {job}）状态为 {status}，退出码 {code}：请查看日志。"),
    "chat.reused": ("Already serving these flags: job {job} is used.", "已在以这些参数服务：沿用任务 {job}。"),
    "chat.log": ("Server log", "服务日志"),
    "chat.reply_model": ("Reply with", "回复所用模型"),
    "chat.side_by_side": ("Side by side: base and tuned", "并排对比：基座与微调"),
    "chat.system": ("System prompt", "系统提示词"),
    "chat.max_new_tokens": ("max_new_tokens", "max_new_tokens（最大生成长度）"),
    "chat.temperature": ("temperature (0: greedy)", "temperature（0 为贪心解码）"),
    "chat.top_p": ("top_p", "top_p"),
    "chat.message": ("Message", "消息"),
    "chat.send": ("Send", "发送"),
    "chat.clear": ("Clear", "清空"),
    "chat.base": ("Base: {model}", "基座：{model}"),
    "chat.tuned": ("Reply: {model}", "回复：{model}"),
    "chat.stream_stats": ("{model}: {chunks} chunks streamed in {seconds:.2f} s",
                          "{model}：{seconds:.2f} 秒内收到 {chunks} 个流式片段"),
    "chat.need_server": ("Load a model first.", "请先加载模型。"),
    "chat.need_tuned": ("Side by side needs a model with adapters: load adapters and pick one of them.",
                        "并排对比需要带适配器的模型：请加载适配器并选择其中之一。"),
    "chat.error": ("The server answered with an error: {error}", "服务返回错误：{error}"),
}
i18n.register(LABELS)

CHAT_TITLE = "chat: "  # the title prefix of the Chat tab's server jobs
LOAD_TIMEOUT = 600.0  # seconds a model may take to load before Load gives up
POLL = 0.5


# -- the chat server ------------------------------------------------------------------------------------------


def _message_text(content) -> str:
    """The text of a chatbot message's content (a string, or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(_message_text(part) for part in content)
    return "" if content is None else str(content)


def conversation(history, system: str, message: str) -> list[dict]:
    """The OpenAI messages of a chat: the system prompt (when given), the turns so far as plain text, the
    new user message."""
    out = [{"role": "system", "content": system}] if system and system.strip() else []
    for turn in history or []:
        if turn.get("role") in ("user", "assistant"):
            out.append({"role": turn["role"], "content": _message_text(turn.get("content"))})
    return [*out, {"role": "user", "content": message}]


class ChatServer:
    """The Chat tab's server: the newest ``deploy`` job titled ``chat: ...``; older ones are stopped."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.owner = servers.ServerOwner(ctx.jobs, CHAT_TITLE)
        found = self.owner.adopt_running()
        for job in found[1:]:  # one chat server at a time; a newer UI keeps the newest
            self.owner.stop(job.id)

    def latest(self):
        """The newest chat server job (running or not), or None."""
        found = [job for job in self.ctx.jobs.list() if job.command == "deploy" and job.title.startswith(CHAT_TITLE)]
        return found[0] if found else None

    def current(self):
        """``(job, models)`` of the running chat server (models None while it loads), or ``(None, None)``."""
        running = self.owner.running()
        if not running:
            return None, None
        job = running[0]
        return job, servers.served_models(servers.base_url(job.argv), servers.api_key(job.argv))

    def client(self, job) -> openai.OpenAI:
        return openai.OpenAI(base_url=servers.base_url(job.argv) + "/v1",
                             api_key=servers.api_key(job.argv) or "none", max_retries=0, timeout=300)

    def status(self, lang: str) -> str:
        """Whether a model is loaded, loading, or failed to load (a server stopped on purpose: none loaded)."""
        job = self.latest()
        if job is None or job.status == "stopped":
            return i18n.t("chat.no_server", lang)
        url = servers.base_url(job.argv)
        if job.running:
            models = servers.served_models(url, servers.api_key(job.argv))
            if models is None:
                return i18n.t("chat.starting", lang, job=job.id, url=url)
            return i18n.t("chat.serving", lang, models=", ".join(m["id"] for m in models), url=url, job=job.id)
        return i18n.t("chat.ended", lang, job=job.id, status=job.status, code=job.exit_code)


def model_ids(models) -> list[str]:
    return [m["id"] for m in models or []]


def pick_reply_model(models, wanted: str | None = None) -> str | None:
    """``wanted`` when it is served, else the first adapter (a model with a parent), else the base model."""
    ids = model_ids(models)
    if wanted in ids:
        return wanted
    tuned = [m["id"] for m in models or [] if m.get("parent")]
    return tuned[0] if tuned else (ids[0] if ids else None)


def base_of(models, model: str) -> str | None:
    """The base model ``model`` is an adapter of (None when ``model`` is a base model itself)."""
    for m in models or []:
        if m["id"] == model:
            return m.get("parent")
    return None


def stream_reply(client: openai.OpenAI, model: str, messages: list[dict], max_tokens: int, temperature: float,
                 top_p: float):
    """The pieces of ``model``'s reply as the server streams them."""
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=int(max_tokens),
                                            temperature=float(temperature), top_p=float(top_p), stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


# -- the tab -------------------------------------------------------------------------------------------------


def build(ctx) -> None:
    lang = ctx.lang
    server = ChatServer(ctx)
    with gr.Accordion(i18n.t("chat.server", lang), open=True):
        form = FlagForm(["deploy"], ctx.host, "chat", lang, basic=["model", "adapters"],
                        widgets={"model": model_picker(ctx), "adapters": adapter_picker(ctx), "port": port_box(ctx)})
        with gr.Row():
            load = gr.Button(i18n.t("chat.load", lang), variant="primary", elem_id="chat-load")
            unload = gr.Button(i18n.t("chat.unload", lang), elem_id="chat-unload")
            refresh = gr.Button(i18n.t("common.refresh_runs", lang), elem_id="chat-refresh", size="sm")
        status = gr.Markdown(lambda: server.status(lang), elem_id="chat-status")
        command = gr.Textbox(lambda: (server.latest().command_line if server.latest() else ""),
                             label=i18n.t("common.command", lang), interactive=False, elem_id="chat-command",
                             buttons=["copy"])
        with gr.Accordion(i18n.t("chat.log", lang), open=False):
            log = gr.Textbox(lines=10, max_lines=10, autoscroll=True, show_label=False, interactive=False,
                             elem_id="chat-log")

    def initial_models():
        _, models = server.current()
        return gr.update(choices=model_ids(models), value=pick_reply_model(models))

    with gr.Row():
        reply_model = gr.Dropdown(choices=[], label=i18n.t("chat.reply_model", lang), elem_id="chat-reply-model",
                                  allow_custom_value=True)
        side = gr.Checkbox(False, label=i18n.t("chat.side_by_side", lang), elem_id="chat-side")
    system = gr.Textbox(label=i18n.t("chat.system", lang), lines=1, elem_id="chat-system")
    with gr.Row():
        max_tokens = gr.Slider(1, 4096, value=256, step=1, label=i18n.t("chat.max_new_tokens", lang),
                               elem_id="chat-max-new-tokens")
        temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label=i18n.t("chat.temperature", lang),
                                elem_id="chat-temperature")
        top_p = gr.Slider(0.01, 1.0, value=1.0, step=0.01, label=i18n.t("chat.top_p", lang), elem_id="chat-top-p")
    with gr.Row():
        with gr.Column(visible=False) as base_column:
            base_bot = gr.Chatbot(label=i18n.t("chat.base", lang, model=""), elem_id="chat-bot-base", height=360,
                                  feedback_options=None)
        with gr.Column():
            bot = gr.Chatbot(label=i18n.t("chat.tuned", lang, model=""), elem_id="chat-bot", height=360,
                             feedback_options=None)
    message = gr.Textbox(label=i18n.t("chat.message", lang), lines=2, elem_id="chat-message")
    with gr.Row():
        send = gr.Button(i18n.t("chat.send", lang), variant="primary", elem_id="chat-send")
        clear = gr.Button(i18n.t("chat.clear", lang), elem_id="chat-clear")
    stats = gr.Markdown(elem_id="chat-stats")

    def do_load(*widget_values):
        values = server_values(form, widget_values)
        errors = forms.validate("deploy", values, ctx.host)
        yield dict(zip(form.error_components, form.error_updates(errors)))
        if errors:
            return
        clean = forms.clean_values("deploy", values, ctx.host)
        job = None
        for running in server.owner.running():
            same = {k: v for k, v in running.values.items() if k != "port"} == \
                   {k: v for k, v in clean.items() if k != "port"}
            if same and job is None:
                job = running
                gr.Info(i18n.t("chat.reused", lang, job=job.id))
            else:
                server.owner.stop(running.id)
        if job is None:
            job = server.owner.start(values, title=server_label(clean))
        url = servers.base_url(job.argv)
        deadline = time.monotonic() + LOAD_TIMEOUT
        while True:
            job = ctx.jobs.get(job.id)
            models = servers.served_models(url, servers.api_key(job.argv))
            update = {status: server.status(lang), command: job.command_line, log: ctx.jobs.log_tail(job.id, 40)}
            if models is not None or not job.running or time.monotonic() > deadline:
                update[reply_model] = gr.update(choices=model_ids(models), value=pick_reply_model(models))
                yield update
                return
            yield update
            time.sleep(POLL)

    def do_unload():
        for job in server.owner.running():
            server.owner.stop(job.id)
        latest = server.latest()
        return {status: server.status(lang), log: ctx.jobs.log_tail(latest.id, 40) if latest else "",
                reply_model: gr.update(choices=[], value=None)}

    def do_send(text, history, base_history, model, side_by_side, system_prompt, n_tokens, temp, p):
        text = (text or "").strip()
        if not text:
            return
        job, models = server.current()
        if job is None or models is None:
            gr.Warning(i18n.t("chat.need_server", lang))
            return
        model = pick_reply_model(models, model)
        base = base_of(models, model)
        if side_by_side and base is None:
            gr.Warning(i18n.t("chat.need_tuned", lang))
            return
        client = server.client(job)
        targets = [(base_bot, base, list(base_history or []))] if side_by_side else []
        targets.append((bot, model, list(history or [])))
        shown = {bot: list(history or []), base_bot: list(base_history or [])}
        lines = []
        yield {message: "", bot: gr.update(label=i18n.t("chat.tuned", lang, model=model)),
               base_bot: gr.update(label=i18n.t("chat.base", lang, model=base or ""))}
        for widget, name, turns in targets:
            messages = conversation(turns, system_prompt, text)
            shown[widget] = [*turns, {"role": "user", "content": text}, {"role": "assistant", "content": ""}]
            yield {widget: shown[widget]}
            start, chunks = time.monotonic(), 0
            try:
                for piece in stream_reply(client, name, messages, n_tokens, temp, p):
                    chunks += 1
                    shown[widget][-1]["content"] += piece
                    yield {widget: shown[widget]}
            except openai.APIError as exc:
                shown[widget][-1]["content"] += f"\n\n⚠ {i18n.t('chat.error', lang, error=exc)}"
                yield {widget: shown[widget]}
            lines.append(i18n.t("chat.stream_stats", lang, model=name, chunks=chunks,
                                seconds=time.monotonic() - start))
            yield {stats: " · ".join(lines)}
        yield {status: server.status(lang), log: ctx.jobs.log_tail(job.id, 40)}

    error_outputs = form.error_components
    form.show_errors(load.click(do_load, form.components, [*error_outputs, status, command, log, reply_model]))
    unload.click(do_unload, None, [status, log, reply_model])
    refresh.click(lambda: refresh_runs(ctx), None, form.inputs["adapters"])
    inputs = [message, bot, base_bot, reply_model, side, system, max_tokens, temperature, top_p]
    outputs = [bot, base_bot, message, stats, status, log]
    send.click(do_send, inputs, outputs)
    message.submit(do_send, inputs, outputs)
    clear.click(lambda: ([], [], ""), None, [bot, base_bot, stats])
    side.change(lambda on: gr.update(visible=on), side, base_column)
    gr.on(None, initial_models, None, reply_model)
    when_shown(lambda: refresh_runs(ctx), form.inputs["adapters"])
    when_shown(lambda: server.status(lang), status)
