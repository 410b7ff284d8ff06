"""What the web UI's browser tests share: the app as a real `swiftkit web-ui` subprocess, headless Chromium.

* :class:`WebUI` starts ``swiftkit web-ui --port FREE --workdir DIR`` and waits until the page answers
  (or ``spawn()`` now, ``wait_ready()`` later, to prepare something meanwhile);
  ``stop()`` ends it with SIGINT (as Ctrl-C would), ``restart()`` starts a new process on the same working
  folder (jobs and runs are read back from disk).
* The ``browser`` fixture is Debian's Chromium (/usr/bin/chromium) driven through playwright's sync API;
  :func:`open_page` loads the app in a fresh page, :func:`open_tab` selects a tab by its label.
* :func:`fill`, :func:`choose` and :func:`value_of` type into, pick in and read a widget by its elem_id
  (the form widgets' ids are ``TAB-FLAG``, e.g. ``train-learning_rate``).
* :func:`screenshot` saves a page to ``build/webui-screenshots/NAME.png`` (git-ignored); docs/images/ holds
  copies of the best ones.

Test modules import the fixtures they use (``from webui_browser import browser, webui_workdir, webui``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from swiftkit.webui.jobs import JobManager

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "webui-screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 120.0  # seconds for `swiftkit web-ui` to answer (gradio's import alone takes ~4 s here)
EXPECT_TIMEOUT = 30_000  # ms an `expect(...)` waits: a job's subprocess starts in seconds on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebUI:
    """One `swiftkit web-ui` process on a free port, serving ``workdir``; its output goes to ``log_path``."""

    def __init__(self, workdir: Path, lang: str = "en", *extra: str):
        self.workdir = Path(workdir)
        self.lang = lang
        self.extra = list(extra)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_path = self.workdir.parent / f"{self.workdir.name}-webui.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "swiftkit.cli.main", "web-ui", "--port", str(self.port), "--workdir",
                str(self.workdir), "--lang", self.lang, *self.extra]

    def start(self) -> WebUI:
        """Start the process and wait until the page answers (fails with the process's output otherwise)."""
        return self.spawn().wait_ready()

    def spawn(self) -> WebUI:
        """Start the process on a free port, without waiting (see :meth:`wait_ready`)."""
        self.port = free_port()
        self.starts += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "a") as log:
            log.write(f"\n--- start {self.starts}: {' '.join(self.argv())}\n")
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.workdir.parent)
        return self

    def wait_ready(self) -> WebUI:
        """Wait until the page answers (fails with the process's output when it exits or takes too long)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"swiftkit web-ui exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"swiftkit web-ui did not answer within {START_TIMEOUT:.0f} s:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """End the process as Ctrl-C would (SIGINT), killing it after ``timeout``; its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def restart(self, **changes) -> WebUI:
        """Stop it and start a new process on the same working folder (``lang=``/``extra=`` may change)."""
        self.stop()
        self.lang = changes.get("lang", self.lang)
        self.extra = list(changes.get("extra", self.extra))
        return self.start()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stop_jobs(workdir: Path) -> None:
    """Stop the jobs a test left running in ``workdir`` (a failed test must not leave training behind)."""
    manager = JobManager(workdir)
    for job in manager.list():
        if job.status == "running":
            manager.stop(job.id, timeout=10)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through playwright's sync API (never a downloaded browser), for one test module:
    playwright's sync API runs an event loop on the main thread until it stops, and a second one (the next
    module's) or any later `asyncio.run` fails while the first is still open."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    expect.set_options(timeout=EXPECT_TIMEOUT)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def webui_workdir(tmp_path_factory) -> Path:
    """An empty working folder for one test module's UI."""
    return tmp_path_factory.mktemp("webui") / "work"


@pytest.fixture(scope="module")
def webui(webui_workdir):
    """`swiftkit web-ui` on ``webui_workdir`` for one test module (English labels); stopped, with any job it left
    running, at the end."""
    webui_workdir.mkdir(parents=True, exist_ok=True)
    app = WebUI(webui_workdir).start()
    yield app
    app.stop()
    stop_jobs(webui_workdir)


def open_page(browser, app: WebUI, width: int = 1400, height: int = 1000, login: tuple[str, str] | None = None):
    """A fresh page with the app loaded (the tab row visible), after logging in with ``login`` (user, key) when
    the app was started with a key. Requests leaving the app's server are recorded in
    ``page.outside_requests``: the UI must not make any."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(30_000)
    outside: list[str] = []
    page.on("request", lambda req: outside.append(req.url)
            if not req.url.startswith((app.url, "data:", "blob:", "about:")) else None)
    page.outside_requests = outside
    page.goto(app.url)
    if login is not None:
        page.locator("input[type=text]").first.fill(login[0])
        page.locator("input[type=password]").fill(login[1])
        page.get_by_role("button", name="Login").click()
    page.get_by_role("tab").first.wait_for()
    return page


def open_tab(page, label: str) -> None:
    """Select the tab whose label is ``label``."""
    page.get_by_role("tab", name=label, exact=True).click()


def fill(page, elem_id: str, text: str) -> None:
    """Type ``text`` into the text box ``elem_id`` (its old text replaced)."""
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)


def choose(page, elem_id: str, value: str) -> None:
    """Pick ``value`` in the dropdown ``elem_id``, typed as a custom value when it is not a choice (a path)."""
    box = page.locator(f"#{elem_id} input").first
    box.fill(value)
    box.press("Enter")
    box.press("Escape")  # close the list so that it covers nothing


def value_of(page, elem_id: str) -> str:
    """The text in the text box ``elem_id``."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first.input_value()


def screenshot(page, name: str, folder: Path = SCREENSHOTS, full_page: bool = True) -> Path:
    """Save the page (the whole page, or what the window shows) to ``folder/NAME.png``; the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
