"""What every tab of the web UI shares: the job manager, the working folder, the language and the plugin host.

One :class:`WebContext` is built by ``swiftkit web-ui`` and handed to each tab's ``build(ctx)``. Jobs run
with the working folder as their current directory, so the relative paths a form holds (``data.jsonl``,
``output``) mean the same in the UI, in the job and in the command line the UI shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swiftkit.commands import COMMANDS
from swiftkit.core.plugins import PluginHost
from swiftkit.webui import i18n
from swiftkit.webui.jobs import TRAINING_COMMANDS, JobManager


@dataclass
class WebContext:
    """The state the tabs share. ``jobs`` keeps its records under ``workdir/jobs/``."""

    jobs: JobManager
    workdir: Path
    lang: str
    host: PluginHost

    @classmethod
    def create(cls, workdir: str | Path, lang: str, host: PluginHost) -> WebContext:
        """A context for ``workdir`` (created when missing) with a job manager rooted there."""
        root = Path(workdir).resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(jobs=JobManager(root, workdir=root), workdir=root, lang=lang, host=host)

    def t(self, key: str, **values) -> str:
        """The label ``key`` in this UI's language."""
        return i18n.t(key, self.lang, **values)

    def output_roots(self) -> list[Path]:
        """The folders training runs are written under: the default ``--output_dir`` and every job's own."""
        defaults = {COMMANDS[name].config.flat_fields()["output_dir"][1].default for name in TRAINING_COMMANDS}
        roots = [self.workdir / d for d in sorted(defaults)]
        for job in self.jobs.list():
            if job.output_dir is not None and job.output_dir not in roots:
                roots.append(job.output_dir)
        return roots
