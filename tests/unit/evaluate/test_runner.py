"""The task runner: a crash mid-evaluation loses nothing scored, and the rerun continues from the cache."""

import json

import pytest

from swiftkit.evaluate.runner import cache_key, run_task


class CountingTask:
    """Scores item i as i % 2; records every batch it was asked to score; can fail on one batch."""

    name, primary, higher_is_better = "count", "acc", True

    def __init__(self, fail_on_batch: int | None = None):
        self.batches, self.fail_on_batch = [], fail_on_batch

    def score(self, model, items):
        self.batches.append([it["id"] for it in items])
        if len(self.batches) == self.fail_on_batch:
            raise RuntimeError("out of memory")
        return [{"id": it["id"], "score": float(int(it["id"]) % 2)} for it in items]

    def aggregate(self, results):
        return {"acc": sum(r["score"] for r in results) / len(results)}


ITEMS = [{"id": str(i)} for i in range(10)]


def test_a_crash_keeps_the_finished_batches_and_the_rerun_scores_only_the_rest(tmp_path):
    cache = tmp_path / "cache" / "count.jsonl"
    with pytest.raises(RuntimeError, match="out of memory"):
        run_task(CountingTask(fail_on_batch=3), None, ITEMS, batch_size=3, cache_path=cache, progress=False)
    assert [json.loads(line)["id"] for line in cache.read_text().splitlines()] == [str(i) for i in range(6)]
    again = CountingTask()
    result = run_task(again, None, ITEMS, batch_size=3, cache_path=cache, progress=False)
    assert again.batches == [["6", "7", "8"], ["9"]]
    assert result["metrics"] == {"acc": 0.5, "num_samples": 10}
    assert result["item_scores"] == [float(i % 2) for i in range(10)]


def test_a_line_cut_short_by_a_crash_is_scored_again(tmp_path):
    cache = tmp_path / "count.jsonl"
    cache.write_text('{"id": "0", "score": 0.0}\n{"id": "1", "sco')
    task = CountingTask()
    result = run_task(task, None, ITEMS[:3], batch_size=5, cache_path=cache, progress=False)
    assert task.batches == [["1", "2"]] and result["metrics"]["num_samples"] == 3


def test_without_a_cache_everything_is_scored_and_ids_must_be_unique():
    task = CountingTask()
    assert run_task(task, None, ITEMS[:4], batch_size=2, progress=False)["metrics"]["acc"] == 0.5
    assert task.batches == [["0", "1"], ["2", "3"]]
    with pytest.raises(ValueError, match="not unique"):
        run_task(CountingTask(), None, [{"id": "a"}, {"id": "a"}], progress=False)


def test_the_cache_key_changes_with_anything_that_changes_the_scores():
    base = cache_key(model="m", settings={"few_shot": 5})
    assert base == cache_key(settings={"few_shot": 5}, model="m")
    assert base != cache_key(model="m", settings={"few_shot": 0})
    assert base != cache_key(model="m2", settings={"few_shot": 5})
