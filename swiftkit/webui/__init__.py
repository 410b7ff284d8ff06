"""The web UI (``swiftkit web-ui``): Gradio tabs over the command table.

:mod:`swiftkit.webui.forms` turns a command's config fields into form fields and form values back
into a command line, a YAML config and validation messages; :mod:`swiftkit.webui.jobs` runs
commands as ``swiftkit`` subprocesses whose state lives on disk. Neither imports gradio: only the
app and its tabs do, when the UI starts.
"""
