"""The comparison report: the paired bootstrap, the verdicts, and the three files it writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from swiftkit.evaluate.report import ReportError, build_report, paired_bootstrap, write_report


def result(items, *, metric="acc", higher_is_better=True, value=None, with_items=True):
    value = sum(items) / len(items) if value is None else value
    out = {"metrics": {metric: value, "num_samples": len(items)}, "primary": metric,
           "higher_is_better": higher_is_better}
    if with_items:
        out["item_scores"] = list(items)
    return out


def run(label, results, adapters=()):
    return {"label": label, "model": "tiny-llama", "adapters": list(adapters), "results": results}


BASE_3 = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # 3/10
TUNED_9 = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # 9/10, right on every item base got right


# paired_bootstrap

def test_identical_scores_give_zero_delta_and_interval():
    scores = [1.0, 0.0, 0.5, 1.0, 0.25]
    assert paired_bootstrap(scores, list(scores)) == (0.0, 0.0, 0.0)


def test_a_constant_shift_gives_that_shift_as_delta_and_both_bounds():
    base = [0.0, 0.5, 2.0, 3.25, 7.0]
    assert paired_bootstrap(base, [x + 1 for x in base]) == (1.0, 1.0, 1.0)


def test_delta_is_the_mean_difference_and_the_interval_lies_around_it():
    base = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    other = [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]  # differences 1, 0, 0, 1, 0, -1: mean 1/6
    delta, low, high = paired_bootstrap(base, other, seed=3)
    assert delta == pytest.approx(1 / 6)
    assert -1.0 <= low <= delta <= high <= 1.0  # no resampled mean leaves [min difference, max difference]
    assert low < 0 < high  # 1/6 from six items is not a clear change


def test_interval_width_matches_the_normal_approximation():
    # differences: fifty 1s and fifty 0s, mean 0.5, standard deviation 0.5, standard error 0.05:
    # the 95% interval is about 0.5 +- 1.96 * 0.05 = [0.402, 0.598]
    base = [0.0] * 100
    other = [1.0] * 50 + [0.0] * 50
    delta, low, high = paired_bootstrap(base, other, n_resamples=2000, seed=1)
    assert delta == 0.5
    assert low == pytest.approx(0.402, abs=0.025) and high == pytest.approx(0.598, abs=0.025)
    # a 50% interval is about 0.5 +- 0.674 * 0.05
    _, low50, high50 = paired_bootstrap(base, other, n_resamples=2000, confidence=0.5, seed=1)
    assert low < low50 < 0.5 < high50 < high
    assert high50 - low50 == pytest.approx(2 * 0.674 * 0.05, abs=0.015)


def test_the_same_seed_gives_the_same_interval():
    base = [float(i % 3 == 0) for i in range(40)]
    other = [float(i % 2 == 0) for i in range(40)]
    assert paired_bootstrap(base, other, seed=7) == paired_bootstrap(base, other, seed=7)
    assert paired_bootstrap(base, other, seed=7) != paired_bootstrap(base, other, seed=8)


def test_pairs_are_kept_together():
    # both models vary a lot from item to item, but other is always base + 0.1: a paired interval is
    # exactly 0.1, where resampling the two lists independently would straddle 0
    base = [0.0, 10.0, 3.0, 7.0, 1.0, 9.0]
    assert paired_bootstrap(base, [x + 0.1 for x in base]) == pytest.approx((0.1, 0.1, 0.1))


def test_unequal_lengths_are_refused_naming_both():
    with pytest.raises(ValueError, match="base has 3 items, other has 4"):
        paired_bootstrap([1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="at least one item"):
        paired_bootstrap([], [])


# build_report

def test_nine_of_ten_against_three_of_ten_is_an_improvement():
    report = build_report([run("base", {"arc": result(BASE_3)}), run("tuned", {"arc": result(TUNED_9)})])
    cell = report["tasks"]["arc"]["models"]["tuned"]
    assert cell["value"] == 0.9 and cell["num_samples"] == 10
    assert cell["delta"] == pytest.approx(0.6)
    assert 0 < cell["ci_low"] < 0.6 < cell["ci_high"] <= 1.0
    assert cell["verdict"] == "improved"
    assert report["tasks"]["arc"]["models"]["base"] == {"missing": False, "value": 0.3, "num_samples": 10}
    assert report["summary"]["tuned"]["improved"] == ["arc"]
    assert report["summary"]["tuned"]["regressed"] == []


def test_the_opposite_is_a_regression_and_equal_scores_are_no_clear_change():
    report = build_report([run("base", {"arc": result(TUNED_9), "boolq": result(BASE_3)}),
                           run("tuned", {"arc": result(BASE_3), "boolq": result(BASE_3)})])
    assert report["tasks"]["arc"]["models"]["tuned"]["verdict"] == "regressed"
    assert report["tasks"]["boolq"]["models"]["tuned"]["verdict"] == "no clear change"  # interval [0, 0]
    assert report["summary"]["tuned"]["regressed"] == ["arc"]
    assert report["summary"]["tuned"]["no clear change"] == ["boolq"]


def test_lower_is_better_turns_the_verdict_around():
    base = [10.0, 14.0, 12.0, 16.0, 11.0, 13.0, 15.0, 9.0]
    lower = [x - 2.0 for x in base]
    ppl = dict(metric="perplexity", higher_is_better=False)
    report = build_report([run("base", {"wiki": result(base, **ppl)}), run("better", {"wiki": result(lower, **ppl)}),
                           run("worse", {"wiki": result([x + 2.0 for x in base], **ppl)})])
    better = report["tasks"]["wiki"]["models"]["better"]
    assert better["delta"] == pytest.approx(-2.0) and better["ci_high"] == pytest.approx(-2.0)
    assert better["verdict"] == "improved"
    assert report["tasks"]["wiki"]["models"]["worse"]["verdict"] == "regressed"
    assert report["tasks"]["wiki"]["higher_is_better"] is False


def test_missing_tasks_are_shown_not_fatal():
    report = build_report([run("base", {"arc": result(BASE_3), "gsm8k": result(BASE_3)}),
                           run("tuned", {"arc": result(TUNED_9), "extra": result(TUNED_9)})])
    assert list(report["tasks"]) == ["arc", "gsm8k", "extra"]
    assert report["tasks"]["gsm8k"]["models"]["tuned"] == {"missing": True}
    assert report["tasks"]["extra"]["models"]["base"] == {"missing": True}
    extra = report["tasks"]["extra"]["models"]["tuned"]
    assert extra["value"] == 0.9 and extra["delta"] is None and extra["verdict"] == "missing"
    assert report["summary"]["tuned"]["missing"] == ["gsm8k", "extra"]


def test_a_task_without_item_scores_gets_a_delta_but_no_interval():
    report = build_report([run("base", {"bleu": result([0.0], metric="bleu", value=20.0, with_items=False)}),
                           run("tuned", {"bleu": result([0.0], metric="bleu", value=23.5, with_items=False)})])
    cell = report["tasks"]["bleu"]["models"]["tuned"]
    assert cell["delta"] == 3.5 and cell["ci_low"] is None and cell["ci_high"] is None
    assert cell["verdict"] == "no interval" and cell["ci_note"] == "no per-item scores"


def test_different_item_counts_or_scores_that_do_not_average_to_the_metric_get_no_interval():
    report = build_report([run("base", {"arc": result(BASE_3), "ppl": result([2.0, 4.0], metric="ppl", value=2.8)}),
                           run("tuned", {"arc": result(TUNED_9[:5]), "ppl": result([1.0, 3.0], metric="ppl", value=1.7)})])
    arc = report["tasks"]["arc"]["models"]["tuned"]
    assert arc["ci_low"] is None and arc["ci_note"] == "item counts differ (baseline 10, tuned 5)"
    ppl = report["tasks"]["ppl"]["models"]["tuned"]
    assert ppl["delta"] == pytest.approx(-1.1) and ppl["ci_low"] is None
    assert "do not average to its metric" in ppl["ci_note"]


def test_malformed_runs_are_refused_naming_run_and_task():
    bad = {"metrics": {"acc": 0.5}, "primary": "accuracy", "item_scores": [1.0, 0.0]}
    with pytest.raises(ReportError, match=r"run 'tuned', task 'arc': the primary metric 'accuracy' is not among"):
        build_report([run("base", {"arc": result([1.0, 0.0])}), run("tuned", {"arc": bad})])
    with pytest.raises(ReportError, match="at least one other run, got 1"):
        build_report([run("base", {})])
    with pytest.raises(ReportError, match="repeated: base"):
        build_report([run("base", {}), run("base", {})])
    with pytest.raises(ReportError, match=r"task 'arc' is compared on 'acc'.*on 'f1'.*in run 'tuned'"):
        build_report([run("base", {"arc": result([1.0])}), run("tuned", {"arc": result([1.0], metric="f1")})])


# write_report

HALF = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # 0.5
FIVE_EIGHTHS = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]  # 0.625: one item better


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    runs = [run("base", {"arc_easy": result(HALF),
                         "wikitext": result([0.0], metric="perplexity", higher_is_better=False, value=12.5,
                                            with_items=False)}),
            run("tuned", {"arc_easy": result(FIVE_EIGHTHS),
                          "wikitext": result([0.0], metric="perplexity", higher_is_better=False, value=11.25,
                                             with_items=False)}, adapters=["out/v0/checkpoint-10"])]
    out = tmp_path_factory.mktemp("report") / "compare"
    return runs, out, write_report(runs, out, title="arc before and after")


def test_write_report_writes_the_three_files_and_nothing_else(written):
    _, out, paths = written
    assert paths == {"json": out / "report.json", "md": out / "report.md", "png": out / "report.png"}
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "report.png"]  # no temp files


def test_markdown_rows(written):
    text = written[2]["md"].read_text(encoding="utf-8")
    assert text.startswith("# arc before and after\n")
    assert "| task | metric | base | tuned |" in text
    # differences per item: one 1 and seven 0s, so a resampled mean is k/8 with k ~ Binomial(8, 1/8):
    # P(k = 0) = 0.34 puts the 2.5th percentile at 0, P(k <= 2) = 0.933 < 0.975 <= P(k <= 3) = 0.989 the
    # 97.5th at 3/8
    assert "| arc_easy | acc ↑ | 0.500 | 0.625 (+0.125, 95% CI +0.000 … +0.375) |" in text
    assert "| wikitext | perplexity ↓ | 12.50 | 11.25 (-1.25, 95% CI n/a) |" in text
    assert "paired bootstrap over the task's items (1000 resamples, seed 0" in text
    assert "`out/v0/checkpoint-10`" in text
    assert "- **tuned** against base: improved 0; regressed 0; no clear change 1 (arc_easy); no interval 1 (wikitext)" in text


def test_png_is_a_real_chart(written):
    png = written[2]["png"]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    image = pytest.importorskip("PIL.Image")
    with image.open(png) as im:
        im.verify()
    with image.open(png) as im:
        assert im.width >= 600 and im.height >= 400


def test_json_round_trips(written):
    runs, _, paths = written
    loaded = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert loaded == {"title": "arc before and after", **build_report(runs)}
    assert loaded["bootstrap"] == {"method": "paired percentile bootstrap over items", "n_resamples": 1000,
                                   "confidence": 0.95, "seed": 0}


def test_many_tasks_and_models_draw(tmp_path):
    tasks = {f"task_{i}": result([float((i + j) % 3 == 0) for j in range(12)]) for i in range(12)}
    tasks["ppl"] = result([5.0, 6.0], metric="ppl", higher_is_better=False)
    runs = [run(label, dict(tasks)) for label in ("base", "a", "b", "c")]
    del runs[2]["results"]["task_3"]
    paths = write_report(runs, tmp_path / "many", n_resamples=200)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| task_3 | acc ↑ | 0.333 | 0.333 (+0.000, 95% CI +0.000 … +0.000) | missing |" in paths["md"].read_text()


def test_importing_the_report_loads_neither_numpy_nor_matplotlib():
    code = ("import sys, swiftkit.evaluate.report; "
            "print(sorted(m for m in ('numpy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
