"""The web UI in a real browser: `swiftkit web-ui` as a subprocess, headless Chromium through playwright.

One app process serves the tests of this module in order (Data tab, Train tab, form errors), then a restart
on the same working folder with ``--lang zh`` and a login key shows the finished run again and the Chinese
labels.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect
from test_sft_cli import ROWS, write_jsonl
from webui_browser import (  # noqa: F401
    WebUI,
    browser,
    choose,
    fill,
    open_page,
    open_tab,
    screenshot,
    stop_jobs,
    value_of,
    webui_workdir,
)

from swiftkit.webui.jobs import loss_points

TABS = ["Data", "Train", "Chat", "Evaluate", "Quantize / Export", "Deploy"]
TABS_ZH = ["数据", "训练", "对话", "评测", "量化 / 导出", "部署"]
TRAIN_TIMEOUT = 240_000  # ms: a few steps of a tiny model, on a busy 2-core machine
STEPS = 5


@pytest.fixture(scope="module")
def webui(webui_workdir, tiny_model_dir):  # noqa: F811
    """`swiftkit web-ui` on ``webui_workdir``, started while the tiny model is built (both take seconds)."""
    webui_workdir.mkdir(parents=True, exist_ok=True)
    app = WebUI(webui_workdir).spawn()
    tiny_model_dir("llama", "chatml")
    yield app.wait_ready()
    app.stop()
    stop_jobs(webui_workdir)


@pytest.fixture(scope="module")
def workspace(webui, tiny_model_dir):
    """A good dataset in the app's working folder, one with a bad row at line 3 outside it (to upload), a tiny
    model."""
    write_jsonl(webui.workdir / "data.jsonl", ROWS * 2)
    rows = [json.dumps(ROWS[0]), json.dumps(ROWS[1]), "{not json", json.dumps(ROWS[3])]
    bad = webui.workdir.parent / "bad.jsonl"
    bad.write_text("\n".join(rows) + "\n")
    return SimpleNamespace(workdir=webui.workdir, bad=bad, tiny=tiny_model_dir("llama", "chatml"))


@pytest.fixture(scope="module")
def page(browser, webui):  # noqa: F811
    page = open_page(browser, webui)
    yield page
    page.close()


def test_the_page_shows_every_tab_and_fetches_nothing_from_outside(page, webui):  # noqa: F811
    assert page.get_by_role("tab").all_inner_texts() == TABS
    assert str(webui.workdir) in page.locator("#swk-header").inner_text()
    assert screenshot(page, "shell").stat().st_size > 10_000
    assert page.outside_requests == []


def test_lint_lists_the_bad_row_of_an_uploaded_file_with_its_line(page, workspace):
    open_tab(page, "Data")
    page.locator("#data-upload input[type=file]").set_input_files(str(workspace.bad))
    expect(page.locator("#data-dataset")).to_contain_text("uploads/bad.jsonl")  # copied into the working folder
    assert (workspace.workdir / "uploads" / "bad.jsonl").read_bytes() == workspace.bad.read_bytes()
    page.locator("#data-lint").click()
    problems = page.locator("#data-problems")
    expect(problems).to_contain_text("uploads/bad.jsonl:3")
    expect(problems.locator("tbody tr")).to_have_count(1)  # the good rows 1, 2 and 4 are not listed
    assert "invalid_json" in problems.inner_text()
    status = page.locator("#data-status").inner_text()
    assert "data lint" in status and "exit status 1" in status and "1 error" in status
    assert value_of(page, "data-log").startswith("uploads/bad.jsonl:3: error: invalid JSON")


def test_preview_highlights_the_trained_tokens(page, workspace):
    open_tab(page, "Data")
    page.locator("#data-dataset input").press("Backspace")  # drop uploads/bad.jsonl
    choose(page, "data-dataset", "data.jsonl")
    choose(page, "data-model", str(workspace.tiny))
    page.locator("#data-preview-button").click()
    marked = page.locator("#data-preview mark.swk-trained")
    marked.first.wait_for()
    # ROWS[0]: the assistant's reply and its end-of-turn token get loss; the user's turn does not.
    assert marked.all_inner_texts() == ["Hi, how can I help?<|im_end|>"]
    assert "Hello!" in page.locator("#data-preview").inner_text()
    screenshot(page, "data")


@pytest.fixture(scope="module")
def ui_run(page, workspace):
    """A training run started in the Train tab, and the command line the tab showed for it, run meanwhile in a
    shell (into another --output_dir, so that the two runs do not share a folder)."""
    open_tab(page, "Train")
    choose(page, "train-model", str(workspace.tiny))
    choose(page, "train-dataset", "data.jsonl")
    for flag, value in (("output_dir", "ui_out"), ("max_steps", str(STEPS)), ("logging_steps", "1"),
                        ("learning_rate", "1e-3")):
        fill(page, f"train-{flag}", value)
    page.locator("#train-show-command").click()
    expect(page.locator("#train-cmdline textarea")).to_have_value(re.compile(r"^swiftkit sft "))
    command = value_of(page, "train-cmdline")
    assert " --output_dir ui_out " in f"{command} "
    page.locator("#train-plan-button").click()  # the dry run's plan: nothing loaded or written
    plan = page.locator("#train-plan textarea")
    # the dry run is a process of its own (imports, a trace on fake tensors): seconds idle, more on a busy machine
    expect(plan).to_have_value(re.compile(r"swiftkit sft dry run: nothing was loaded or written"),
                               timeout=TRAIN_TIMEOUT)
    assert re.search(r"parameters: [\d,]+ trainable of [\d,]+", plan.input_value())
    assert f"{STEPS} in all" in plan.input_value()
    assert not (workspace.workdir / "ui_out").exists()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    shell = subprocess.Popen(command.replace("--output_dir ui_out", "--output_dir shell_out"), shell=True,
                             cwd=workspace.workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    page.locator("#train-start").click()
    status = page.locator("#train-job-status")
    try:
        expect(status).to_contain_text("finished", timeout=TRAIN_TIMEOUT)
    finally:
        shell_output = shell.communicate(timeout=TRAIN_TIMEOUT / 1000)[0]
    run_dirs = sorted((workspace.workdir / "ui_out").glob("v*-*"))
    assert len(run_dirs) == 1
    return SimpleNamespace(command=command, run_dir=run_dirs[0], shell=shell, shell_output=shell_output)


def test_training_started_in_the_ui_plots_its_loss_and_finishes(page, ui_run):
    status = page.locator("#train-job-status").inner_text()
    assert "finished (exit status 0)" in status and ui_run.run_dir.name in status
    # The plot's points are the run's logged losses (vega labels each point "step: N; loss: X").
    points = page.locator("#train-loss [aria-roledescription='point']")
    expect(points).to_have_count(STEPS)
    shown = [re.fullmatch(r"step: (\d+); loss: ([\d.]+)", label).groups()
             for label in points.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")]
    logged = loss_points(ui_run.run_dir)
    assert [int(s) for s, _ in shown] == [s for s, _ in logged] == list(range(1, STEPS + 1))
    assert [float(v) for _, v in shown] == pytest.approx([v for _, v in logged], abs=1e-6)
    assert page.locator("#train-loss-caption").inner_text().startswith(f"{STEPS} points")
    assert "[swiftkit] run finished" in value_of(page, "train-log")
    runs = page.locator("#train-runs")
    expect(runs).to_contain_text(f"ui_out/{ui_run.run_dir.name}")
    screenshot(page, "train")
    assert page.outside_requests == []


def test_the_shown_command_run_in_a_shell_writes_the_same_args_json(ui_run, workspace):
    assert ui_run.shell.returncode == 0, ui_run.shell_output[-3000:]
    shell_runs = sorted((workspace.workdir / "shell_out").glob("v*-*"))
    assert len(shell_runs) == 1
    ui_args = json.loads((ui_run.run_dir / "args.json").read_text())
    shell_args = json.loads((shell_runs[0] / "args.json").read_text())
    # The one difference is the one we made: the shell run got its own --output_dir (two runs started at
    # once in one folder could pick the same v<N>-<timestamp> name). args.json holds no times or run paths.
    assert (ui_args.pop("output_dir"), shell_args.pop("output_dir")) == ("ui_out", "shell_out")
    assert ui_args == shell_args
    assert ui_args["callbacks"] == ["graceful_exit"]  # what the job adds, so Stop leaves a checkpoint
    assert ui_args["max_steps"] == STEPS and ui_args["model"] == str(workspace.tiny)


def test_a_form_error_shows_under_its_field(page, workspace):
    open_tab(page, "Train")
    fill(page, "train-learning_rate", "-1")
    advanced = page.locator("#train-advanced").get_by_text("Advanced", exact=True)
    advanced.click()
    fill(page, "train-warmup_ratio", "2")  # an Advanced flag
    advanced.click()  # closed again: its error opens it
    expect(page.locator("#train-warmup_ratio")).to_be_hidden()
    page.locator("#train-show-command").click()
    lr_error, warmup_error = page.locator("#train-learning_rate-error"), page.locator("#train-warmup_ratio-error")
    expect(lr_error).to_have_text("⚠ --learning_rate must be > 0")
    expect(warmup_error).to_have_text("⚠ --warmup_ratio must be in [0, 1)")
    expect(warmup_error).to_be_visible()
    expect(page.locator("#train-status")).to_contain_text("--learning_rate, --warmup_ratio")
    # The error line is the last line of its field's box.
    field, error = page.locator("#train-learning_rate").bounding_box(), lr_error.bounding_box()
    assert field["y"] < error["y"] and error["y"] + error["height"] <= field["y"] + field["height"] + 1
    assert page.locator("#train-learning_rate > .swk-field-error").count() == 1
    page.locator("#train-learning_rate").scroll_into_view_if_needed()
    screenshot(page, "train-form-error", full_page=False)
    fill(page, "train-learning_rate", "1e-3")
    fill(page, "train-warmup_ratio", "0")
    advanced.click()
    page.locator("#train-show-command").click()
    expect(lr_error).to_be_hidden()
    expect(warmup_error).to_be_hidden()

    open_tab(page, "Data")
    page.locator("#data-dataset input").press("Backspace")  # no dataset left
    page.locator("#data-dataset input").press("Escape")
    page.locator("#data-lint").click()
    expect(page.locator("#data-dataset-error")).to_have_text("⚠ `swiftkit data lint` needs --dataset")


@pytest.fixture(scope="module")
def restarted(webui, ui_run, browser, tmp_path_factory):  # noqa: F811
    """The app stopped and started again on the same working folder, now with --lang zh and a login key
    (--api_key_file); a page on it, logged in as the user swiftkit."""
    key_file = tmp_path_factory.mktemp("key") / "key"
    key_file.write_text("s3cret-key\n")
    webui.restart(lang="zh", extra=["--api_key_file", str(key_file)])
    with pytest.raises(urllib.error.HTTPError) as refused:  # nothing without logging in
        urllib.request.urlopen(f"{webui.url}config", timeout=10)
    assert refused.value.code == 401
    page = open_page(browser, webui, login=("swiftkit", "s3cret-key"))
    yield page
    page.close()


def test_a_restarted_ui_lists_the_finished_run(restarted, ui_run):
    open_tab(restarted, "训练")
    row = restarted.locator("#train-runs tbody tr", has_text=f"ui_out/{ui_run.run_dir.name}")
    expect(row).to_contain_text("已完成")  # finished
    expect(row).to_contain_text(f"checkpoint-{STEPS}")
    # The job that trained it is read back from its record, with its command line.
    expect(restarted.locator("#train-job-status")).to_contain_text(ui_run.command)


def test_lang_zh_shows_chinese_labels(restarted):
    assert restarted.get_by_role("tab").all_inner_texts() == TABS_ZH
    open_tab(restarted, "数据")
    expect(restarted.locator("#data-lint")).to_have_text("检查")
    open_tab(restarted, "训练")
    expect(restarted.locator("#train-start")).to_have_text("开始训练")
    expect(restarted.locator("#train-advanced")).to_contain_text("高级选项")
    screenshot(restarted, "train-zh")
