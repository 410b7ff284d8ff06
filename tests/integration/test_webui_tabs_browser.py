"""The Chat, Evaluate, Quantize / Export and Deploy tabs in a real browser, on a tiny trained LoRA run.

`swiftkit web-ui` runs as a subprocess (fixtures of webui_browser); every action of these tabs starts a real
`swiftkit` job (deploy, eval, export). Chat sees a reply grow chunk by chunk in the page; the curl command the
Deploy tab shows is run in a shell; Evaluate shows the comparison report of a local benchmark; Export shows the
parity report of a merged export. Each tab is saved as a screenshot.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect
from webui_browser import browser, open_page, open_tab, screenshot, webui, webui_workdir  # noqa: F401

from swiftkit.webui.i18n import t
from swiftkit.webui.jobs import JobManager
from swiftkit.webui.servers import base_url, served_models
from tests.evaldata import general_mcq_folder

KEY = "sk-webui-test"
SERVE_TIMEOUT = 120_000  # ms for a deploy job to load the tiny model and answer
JOB_TIMEOUT = 150_000  # ms for an eval or export job


@pytest.fixture(scope="module")
def tiny_run(trained, webui):  # noqa: F811
    """The 2-step LoRA run of the `trained` fixture, copied under the UI's default output folder."""
    run = webui.workdir / "output" / trained.parent.name
    shutil.copytree(trained.parent, run)
    return run


@pytest.fixture(scope="module")
def page(browser, webui, tiny_run):  # noqa: F811
    """One page of the app for the module's tests (each opens its own tab)."""
    page = open_page(browser, webui)
    yield page
    page.close()


def choose(page, elem_id: str, text: str) -> None:
    """Pick the option of dropdown ``elem_id`` whose label contains ``text``."""
    box = page.locator(f"#{elem_id} input[role=combobox]")
    box.click()
    box.fill(text)
    page.get_by_role("option", name=re.compile(re.escape(text))).first.click()
    page.keyboard.press("Escape")


def fill(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(value)


def set_number(page, elem_id: str, value) -> None:
    """Set a slider's number box."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def wait_text(page, selector: str, text: str, timeout: float) -> None:
    page.wait_for_function("([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
                           arg=[selector, text], timeout=timeout)


def code_text(page, elem_id: str) -> str:
    """The text of a gr.Code block (CodeMirror renders one element per line)."""
    return "\n".join(page.locator(f"#{elem_id} .cm-line").all_inner_texts())


def table_rows(page, elem_id: str) -> list[list[str]]:
    """The cells of a gr.Dataframe's rows (rendered as a virtual grid below its header table)."""
    rows = page.locator(f"#{elem_id} [role=row]:has([role=gridcell])")
    return [[c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()] for i in range(rows.count())]


def table_headers(page, elem_id: str) -> list[str]:
    return [h.strip() for h in page.locator(f"#{elem_id} table thead th").all_inner_texts()]


def running_servers(workdir) -> list:
    return [job for job in JobManager(workdir).list() if job.command == "deploy" and job.running]


RECORD_REPLIES = """() => {
  window.__replies = [];
  const root = document.querySelector('#chat-bot');
  new MutationObserver(() => {
    const bots = root.querySelectorAll('.message.bot');
    const text = bots.length ? bots[bots.length - 1].innerText : '';
    if (window.__replies[window.__replies.length - 1] !== text) window.__replies.push(text);
  }).observe(root, {subtree: true, childList: true, characterData: true});
}"""


def test_chat_streams_the_reply_of_a_trained_run_and_compares_it_with_the_base(page, webui, tiny_run):  # noqa: F811
    open_tab(page, t("tab.chat"))
    choose(page, "chat-adapters", tiny_run.name)
    page.locator("#chat-load").click()
    wait_text(page, "#chat-status", "Serving", SERVE_TIMEOUT)
    assert page.locator("#chat-command textarea").input_value().startswith(
        f"swiftkit deploy --adapters {tiny_run.name}={tiny_run} --port ")
    [server] = running_servers(webui.workdir)
    assert page.locator("#chat-reply-model input").input_value() == tiny_run.name

    set_number(page, "chat-max-new-tokens", 12)
    set_number(page, "chat-temperature", 0)
    page.evaluate(RECORD_REPLIES)
    fill(page, "chat-message", "Hello!")
    page.locator("#chat-send").click()
    wait_text(page, "#chat-stats", "chunks streamed", 60_000)
    states = [s for s in page.evaluate("window.__replies") if s.strip()]
    chunks = int(re.search(r"(\d+) chunks streamed", page.inner_text("#chat-stats")).group(1))
    assert chunks >= 3
    assert len(states) >= 3, states  # the reply was shown while it grew, not only when complete
    assert len(states[0]) < len(states[-1])
    assert page.locator("#chat-bot .message.bot").last.inner_text() == states[-1]

    page.locator("#chat-side input").check()
    fill(page, "chat-message", "What is 1+1?")
    page.locator("#chat-send").click()
    page.wait_for_function("() => document.querySelector('#chat-stats').innerText.split('·').length === 2",
                           timeout=60_000)
    base_stats, tuned_stats = page.inner_text("#chat-stats").split("·")
    base = next(m["id"] for m in served_models(base_url(server.argv)) if m["parent"] is None)
    assert base_stats.startswith(f"{base}: ") and "chunks streamed" in base_stats
    assert tuned_stats.strip().startswith(f"{tiny_run.name}: ") and "chunks streamed" in tuned_stats
    assert page.locator("#chat-bot-base .message.bot").count() == 1
    assert page.locator("#chat-bot .message.bot").count() == 2
    assert page.locator("#chat-bot-base .message.bot").inner_text().strip()
    assert screenshot(page, "chat").stat().st_size > 10_000

    page.locator("#chat-unload").click()
    wait_text(page, "#chat-status", "No model loaded.", 30_000)
    assert JobManager(webui.workdir).get(server.id).status == "stopped"


def test_deploy_serves_a_run_and_the_shown_curl_and_python_work(page, webui, tiny_run):  # noqa: F811
    open_tab(page, t("tab.deploy"))
    page.locator("#deploy-start").click()  # nothing to serve: the config's own check, under its field
    expect(page.locator("#deploy-model-error")).to_contain_text("needs --model or --adapters", timeout=30_000)
    assert running_servers(webui.workdir) == []
    choose(page, "deploy-adapters", tiny_run.name)
    fill(page, "deploy-api_key", KEY)
    page.locator("#deploy-start").click()
    wait_text(page, "#deploy-status", "Serving", SERVE_TIMEOUT)
    url = page.locator("#deploy-url textarea").input_value()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
    with pytest.raises(urllib.error.HTTPError) as refused:  # the server wants the key
        urllib.request.urlopen(url + "/models", timeout=10)
    assert refused.value.code == 401
    curl = code_text(page, "deploy-curl")
    assert curl.startswith(f"curl {url}/chat/completions") and f'"model": "{tiny_run.name}"' in curl
    assert f"Authorization: Bearer {KEY}" in curl
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply["object"] == "chat.completion" and reply["model"] == tiny_run.name
    assert reply["usage"]["completion_tokens"] > 0 and isinstance(reply["choices"][0]["message"]["content"], str)
    python = code_text(page, "deploy-python")
    out = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    assert screenshot(page, "deploy").stat().st_size > 10_000

    page.locator("#deploy-stop").click()
    wait_text(page, "#deploy-status", "No server is running.", 30_000)
    assert running_servers(webui.workdir) == []
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/models", timeout=5)


def test_eval_compares_the_run_with_its_base_on_a_local_benchmark(page, webui, tiny_run):  # noqa: F811
    folder = general_mcq_folder(webui.workdir / "bench")
    open_tab(page, t("tab.evaluate"))
    choose(page, "eval-adapters", tiny_run.name)
    choose(page, "eval-compare", "base (")
    page.locator("#eval-eval_dataset .remove-all").click()  # the default, qa
    box = page.locator("#eval-eval_dataset input[role=combobox]")
    box.fill(f"general_mcq={folder}")
    box.press("Enter")
    page.keyboard.press("Escape")
    fill(page, "eval-eval_limit", "2")
    page.locator("#eval-run").click()
    expect(page.locator("#eval-command textarea")).to_have_value(
        f"swiftkit eval --adapters {tiny_run} --eval_dataset general_mcq={folder} --eval_limit 2 --compare base", timeout=30_000)
    wait_text(page, "#eval-report", "general_mcq", JOB_TIMEOUT)
    assert "finished" in page.inner_text("#eval-status")
    headers = table_headers(page, "eval-report")
    assert headers[:4] == ["benchmark", "metric", "base", "tuned"] and "verdict tuned" in headers
    [row] = table_rows(page, "eval-report")
    assert row[0] == "general_mcq" and row[1] == "acc ↑"
    results = page.locator("#eval-folder textarea").input_value()
    report = json.loads((webui.workdir.parent / results / "report.json").read_text())
    assert float(row[2]) == pytest.approx(report["tasks"]["general_mcq"]["models"]["base"]["value"], abs=1e-4)
    assert page.locator("#eval-chart img").get_attribute("src")
    assert screenshot(page, "evaluate").stat().st_size > 10_000


def test_export_merges_the_run_and_shows_parity(page, webui, tiny_run):  # noqa: F811
    out = webui.workdir / "merged"
    open_tab(page, t("tab.export"))
    page.locator("#export-quant_method input[role=combobox]").click()
    methods = page.get_by_role("option").all_inner_texts()
    assert {"bnb", "torchao", "gptq", "awq", "gguf"} <= set(methods) and "merged" not in methods
    page.keyboard.press("Escape")
    choose(page, "export-adapters", tiny_run.name)
    fill(page, "export-output_dir", str(out))
    page.locator("#export-run").click()
    expect(page.locator("#export-command textarea")).to_have_value(
        f"swiftkit export --adapters {tiny_run} --output_dir {out}", timeout=30_000)
    wait_text(page, "#export-parity", "template", JOB_TIMEOUT)
    assert "finished" in page.inner_text("#export-status")
    checks = dict(row[:2] for row in table_rows(page, "export-parity"))
    assert checks[f"parity of {out}"] == "ok"
    assert checks["template"] == "4/4 conversations render token for token as in training"
    assert page.locator("#export-folder textarea").input_value() == str(out)
    assert "model.safetensors" in [row[0] for row in table_rows(page, "export-files")]
    assert json.loads((out / "parity.json").read_text())["ok"] is True
    replies = table_rows(page, "export-replies")
    assert len(replies) == 4 and all(r[3] == "yes" for r in replies)
    assert screenshot(page, "export").stat().st_size > 10_000
