"""The web UI's shell: one Gradio page with a tab per stage, and the server ``swiftkit web-ui`` runs.

:func:`build_app` composes the tabs of :data:`TABS` in order; each tab module's ``build(ctx)`` adds its
components inside ``gr.Tab``. :func:`launch` serves the page (blocking), behind a login page when a key
is given; :func:`serve` does both for ``swiftkit web-ui``. The page loads nothing from outside the server:
the theme uses the browser's own fonts.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from swiftkit.commands import build_host
from swiftkit.webui.context import WebContext
from swiftkit.webui.tabs import chat, data, deploy, evaluate, export, train

TABS = {"data": data, "train": train, "chat": chat, "evaluate": evaluate, "export": export, "deploy": deploy}
AUTH_USER = "swiftkit"  # the user name of the login; the password is the key (--api_key or --api_key_file)

CSS = """
.swk-field-error { color: #d93025; font-size: 0.9em; margin-top: 4px; }
.swk-preview { white-space: pre-wrap; font-family: ui-monospace, monospace; line-height: 1.5; }
.swk-preview mark.swk-trained { background: #c8f7c5; color: inherit; border-radius: 2px; }
"""


def theme() -> gr.themes.Base:
    """Gradio's default theme with system fonts (its own fonts would be fetched from a font service)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "monospace"])


def build_app(ctx: WebContext) -> gr.Blocks:
    """The page: a title, where jobs run, and the tabs of :data:`TABS`."""
    with gr.Blocks(title=ctx.t("app.title"), analytics_enabled=False) as app:
        gr.Markdown(f"## {ctx.t('app.title')}\n{ctx.t('app.intro', workdir=ctx.workdir)}", elem_id="swk-header")
        with gr.Tabs():
            for name, module in TABS.items():
                with gr.Tab(ctx.t(f"tab.{name}"), id=name, elem_id=f"tab-{name}"):
                    module.build(ctx)
    return app


def launch(app: gr.Blocks, *, host: str, port: int, share: bool = False, api_key: str | None = None) -> None:
    """Serve ``app`` on ``host:port`` until interrupted; behind Gradio's login (user :data:`AUTH_USER`, password
    ``api_key``) when a key is given."""
    app.queue(default_concurrency_limit=4)
    app.launch(server_name=host, server_port=port, share=share, auth=(AUTH_USER, api_key) if api_key else None,
               show_error=True, ssr_mode=False, footer_links=[], theme=theme(), css=CSS)


def serve(*, workdir: str | Path, lang: str, host: str, port: int, share: bool = False,
          api_key: str | None = None) -> None:
    """Build the context (one plugin host, jobs under ``workdir/jobs/``) and the page, and serve it."""
    ctx = WebContext.create(workdir, lang, build_host())
    print(f"swiftkit web-ui: jobs run in {ctx.workdir} (records in {ctx.jobs.jobs_dir})", flush=True)
    launch(build_app(ctx), host=host, port=port, share=share, api_key=api_key)
