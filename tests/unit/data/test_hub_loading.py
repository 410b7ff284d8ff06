"""Hub datasets that are already cached load without network, from the caches' real on-disk layouts.

No hub is contacted: the hub endpoints point at a closed local port (a real, instant connection
failure, as when the machine is offline), and every cache lives in a temporary folder.
"""

from __future__ import annotations

import json
import time

import datasets
import datasets.config
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants as hf_constants
from modelscope_hub import config as modelscope_config

from swiftkit.data import DatasetError
from swiftkit.data.hub import hf_arrow_cache, hf_cached_snapshot, iter_hub_rows, load_hub_rows

CLOSED_PORT = "127.0.0.1:9"  # nothing listens there: connecting fails at once
SHA = "0123456789abcdef0123456789abcdef01234567"
TRAIN = [{"query": f"q{i}", "response": f"r{i}"} for i in range(3)]
TEST = [{"query": "tq", "response": "tr"}]


def _content(rows):
    return [{k: v for k, v in row.items() if k != "_origin"} for row in rows]


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def hubs(tmp_path, monkeypatch):
    """Unreachable hubs, empty default caches under tmp_path, offline switches off.

    huggingface_hub and datasets read HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE, ... from the
    environment once, at import, into module constants (which their code reads at call time), so
    setting environment variables here would change nothing: the constants are patched instead.
    ModelScope reads MODELSCOPE_ENDPOINT and MODELSCOPE_CACHE when it first builds its default
    configuration (once per process); dropping that object makes the next call build it anew.
    """
    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://{CLOSED_PORT}")
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", f"http://{CLOSED_PORT}")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", f"http://{CLOSED_PORT}")
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-default"))
    monkeypatch.setattr(modelscope_config, "_default_config", None)
    for var in ("NO_PROXY", "no_proxy"):  # probe the closed port itself, not a configured proxy
        monkeypatch.setenv(var, "*")
    return tmp_path


@pytest.fixture
def hf_offline(hubs, monkeypatch):
    """HF_HUB_OFFLINE=1 as the user sets it; the constants the libraries read it into follow."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return hubs


def hf_snapshot(hub_cache, repo_id="org/name", readme="---\nlicense: mit\n---\n"):
    """The layout huggingface_hub writes: datasets--org--name/{refs/main, snapshots/<sha>/...}."""
    repo = hub_cache / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SHA)
    snapshot = repo / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    (snapshot / "README.md").write_text(readme + "# a dataset\n", encoding="utf-8")
    return snapshot


# --- Hugging Face ----------------------------------------------------------------------------------

def test_hf_snapshot_loads_in_offline_mode(hf_offline, capsys):
    """The usual layout of a hub dataset: parquet shards named by split under data/."""
    snapshot = hf_snapshot(hf_offline / "hf-hub")
    (snapshot / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(TRAIN), snapshot / "data" / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(TEST), snapshot / "data" / "test-00000-of-00001.parquet")
    assert hf_cached_snapshot("org/name") == snapshot

    rows = load_hub_rows("org/name", use_hf=True, split="train")
    assert _content(rows) == TRAIN
    assert rows[0]["_origin"] == "hf:org/name[train]:row 1"
    assert _content(load_hub_rows("org/name", use_hf=True, split="test")) == TEST
    err = capsys.readouterr().err
    assert "offline mode is set" in err and f"using the cached copy in {snapshot}" in err


def test_hf_snapshot_used_when_the_hub_is_unreachable(hubs, capsys):
    """No offline switch: the probe fails, the snapshot in cache_dir is read, within seconds."""
    snapshot = hf_snapshot(hubs / "mine")
    _jsonl(snapshot / "train.jsonl", TRAIN)
    start = time.monotonic()
    rows = load_hub_rows("org/name", use_hf=True, cache_dir=str(hubs / "mine"))
    assert time.monotonic() - start < 15  # the library's own retries alone take ~25 s
    assert _content(rows) == TRAIN
    err = capsys.readouterr().err
    assert f"cannot reach the Hugging Face hub (http://{CLOSED_PORT})" in err and str(snapshot) in err


README_CONFIGS = """---
configs:
- config_name: en
  data_files:
  - split: train
    path: english/*.jsonl
- config_name: zh
  data_files:
  - split: train
    path: chinese/part-*.jsonl
  - split: test
    path: chinese/eval.jsonl
---
"""


def test_hf_subsets_and_splits_follow_the_readme_configs(hf_offline):
    snapshot = hf_snapshot(hf_offline / "hf-hub", readme=README_CONFIGS)
    en = [{"text": "hello"}]
    zh = [{"text": "ni hao"}, {"text": "zai jian"}]
    _jsonl(snapshot / "english" / "a.jsonl", en)
    _jsonl(snapshot / "chinese" / "part-0.jsonl", zh)
    _jsonl(snapshot / "chinese" / "eval.jsonl", [{"text": "xie xie"}])
    assert _content(load_hub_rows("org/name", use_hf=True, subset="en")) == en
    assert _content(load_hub_rows("org/name", use_hf=True, subset="zh")) == zh
    assert _content(load_hub_rows("org/name", use_hf=True, subset="zh", split="test")) == [{"text": "xie xie"}]
    with pytest.raises(DatasetError) as info:
        load_hub_rows("org/name", use_hf=True, subset="fr")
    msg = str(info.value)
    assert "'org/name'" in msg and "subset 'fr'" in msg and "cached copy could not be read" in msg and "zh" in msg


def _datasets_arrow_cache(cache_dir, tmp_path, repo_id="org/name"):
    """What an earlier online ``load_dataset(repo_id)`` leaves in its cache_dir: prepared Arrow files
    under ``org___name/<config>/<version>/<hash>/``. The library itself writes them here, from a
    local copy of the repository named like the dataset; only the top folder is then renamed to
    the hub id's form (a local folder has no namespace)."""
    org, name = repo_id.split("/")
    _jsonl(tmp_path / "src" / name / "train.jsonl", TRAIN)
    datasets.load_dataset(str(tmp_path / "src" / name), split="train", cache_dir=str(cache_dir))
    (cache_dir / name).rename(cache_dir / f"{org}___{name}")


def test_hf_datasets_own_arrow_cache_loads_without_network(hubs, capsys):
    cache = hubs / "ds-cache"
    _datasets_arrow_cache(cache, hubs)
    assert hf_arrow_cache("org/name", str(cache)) == cache / "org___name"
    assert hf_cached_snapshot("org/name", str(cache)) is None
    start = time.monotonic()
    rows = load_hub_rows("org/name", use_hf=True, cache_dir=str(cache))
    assert time.monotonic() - start < 15
    assert _content(rows) == TRAIN
    assert f"using the cached copy in {cache / 'org___name'}" in capsys.readouterr().err
    # the temporary offline switch is undone afterwards
    assert hf_constants.HF_HUB_OFFLINE is False and datasets.config.HF_HUB_OFFLINE is False


@pytest.mark.parametrize("offline", [False, True])
def test_hf_nothing_cached_is_a_fast_clear_error(hubs, monkeypatch, offline):
    if offline:
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(DatasetError) as info:
        load_hub_rows("org/absent", use_hf=True, cache_dir=str(hubs / "c"))
    assert time.monotonic() - start < 15
    msg = str(info.value)
    assert msg.startswith("dataset 'org/absent' (Hugging Face hub, split 'train'): ")
    assert ("offline mode is set" if offline else "cannot reach the Hugging Face hub") in msg
    assert "no copy is cached" in msg and str(hubs / "hf-hub") in msg and "local file" in msg


def test_hf_stream_from_the_cached_snapshot(hf_offline):
    snapshot = hf_snapshot(hf_offline / "hf-hub")
    rows = [{"text": f"line {i}"} for i in range(50)]
    _jsonl(snapshot / "data" / "train.jsonl", rows)
    stream = iter_hub_rows("org/name", use_hf=True)
    first = next(stream)
    assert first == {"text": "line 0", "_origin": "hf:org/name[train]:row 1"}
    assert _content([first, *stream]) == rows


def test_hf_stream_from_the_arrow_cache(hubs):
    _datasets_arrow_cache(hubs / "ds-cache", hubs)
    assert _content(iter_hub_rows("org/name", use_hf=True, cache_dir=str(hubs / "ds-cache"))) == TRAIN


# --- ModelScope ------------------------------------------------------------------------------------

def test_ms_snapshot_layout_used_when_unreachable(hubs, capsys):
    """modelscope 1.40 (modelscope_hub) caches at <cache>/datasets/<org>--<name>/snapshots/<rev>/."""
    folder = hubs / "ms" / "datasets" / "org--name" / "snapshots" / "master"
    _jsonl(folder / "train.jsonl", TRAIN)
    _jsonl(folder / "test.jsonl", TEST)
    start = time.monotonic()
    rows = load_hub_rows("org/name", cache_dir=str(hubs / "ms"))
    assert time.monotonic() - start < 15
    assert _content(rows) == TRAIN and rows[0]["_origin"] == f"{folder / 'train.jsonl'}:1"
    assert _content(load_hub_rows("org/name", split="test", cache_dir=str(hubs / "ms"))) == TEST
    err = capsys.readouterr().err
    assert "cannot reach ModelScope" in err and f"using the cached copy in {folder}" in err


def test_ms_older_layout_in_the_default_cache_with_subset(hubs):
    """Releases before 1.38 cached at <cache>/datasets/<org>/<name, dots as ___>/; the default
    cache is MODELSCOPE_CACHE."""
    folder = hubs / "ms-default" / "datasets" / "org" / "my___data"
    _jsonl(folder / "math" / "train.jsonl", TRAIN)
    _jsonl(folder / "code" / "train.jsonl", TEST)
    assert _content(load_hub_rows("org/my.data", subset="code")) == TEST
    stream = iter_hub_rows("org/my.data", subset="math")
    assert _content(stream) == TRAIN


def test_ms_nothing_cached_is_a_fast_clear_error(hubs):
    start = time.monotonic()
    with pytest.raises(DatasetError) as info:
        load_hub_rows("org/absent", cache_dir=str(hubs / "ms"))
    assert time.monotonic() - start < 15
    msg = str(info.value)
    assert msg.startswith(f"dataset 'org/absent' (ModelScope): cannot reach ModelScope (http://{CLOSED_PORT})")
    assert f"no copy is cached in {hubs / 'ms'}" in msg and "local file" in msg
