"""Labels of the web UI in English and Chinese.

Every visible label has a key; :data:`LABELS` holds the shell's (title, tab names, shared words) and
each tab module keeps its own ``LABELS`` dict, added here with :func:`register` when the module is
imported. :func:`t` looks a key up for a language (``en`` or ``zh``). A key two modules define with
different texts is an error, so a tab cannot silently change another's label.
"""

from __future__ import annotations

LANGS = ("en", "zh")

LABELS: dict[str, tuple[str, str]] = {
    "app.title": ("swiftkit web UI", "swiftkit 网页界面"),
    "app.intro": (
        "Every action runs the `swiftkit` CLI as a job in **{workdir}**; its command is shown and reproduces it.",
        "每个操作都以任务形式在 **{workdir}** 中运行 `swiftkit` 命令行；界面显示的命令可以原样复现该任务。",
    ),
    "tab.data": ("Data", "数据"),
    "tab.train": ("Train", "训练"),
    "tab.chat": ("Chat", "对话"),
    "tab.evaluate": ("Evaluate", "评测"),
    "tab.export": ("Quantize / Export", "量化 / 导出"),
    "tab.deploy": ("Deploy", "部署"),
    "common.advanced": ("Advanced", "高级选项"),
    "common.errors": ("Fix the marked fields: {flags}", "请修正标出的字段：{flags}"),
    "common.error_prefix": ("Error", "错误"),
    "common.command": ("Command", "命令"),
    "common.stop": ("Stop", "停止"),
    "common.refresh_runs": ("Refresh runs", "刷新训练结果"),
    "common.log": ("Log", "日志"),
}

_ALL: dict[str, tuple[str, str]] = dict(LABELS)


def register(labels: dict[str, tuple[str, str]]) -> None:
    """Add a module's labels; a key already registered with other texts raises ``ValueError``."""
    for key, texts in labels.items():
        if len(texts) != len(LANGS):
            raise ValueError(f"label {key!r} needs one text per language {LANGS}, got {texts!r}")
        if _ALL.get(key, texts) != texts:
            raise ValueError(f"label {key!r} is defined twice with different texts: {_ALL[key]!r} and {texts!r}")
        _ALL[key] = texts


def t(key: str, lang: str = "en", **values) -> str:
    """The label ``key`` in ``lang``, formatted with ``values``; an unknown key raises ``KeyError``."""
    text = _ALL[key][LANGS.index(lang)]
    return text.format(**values) if values else text
