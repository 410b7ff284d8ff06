"""Shipped dataset cards, card schema errors, the built-in plugin, self-cognition and hub errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from hosts import builtin_host, empty_registries, with_datasets

from swiftkit.core.registry import Registry
from swiftkit.core.resources import data_dir
from swiftkit.data import DatasetError, load_rows
from swiftkit.data.registry import DatasetEntry, load_card, load_cards, resolve_entry_path

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The dataset registry filled by the built-in data plugin through pluggy."""
    from swiftkit.core.plugins import PluginHost
    from swiftkit.data import plugin

    return PluginHost.build([plugin], entry_points=False).registries.datasets


def test_plugin_import_is_light():
    code = (
        "import sys, swiftkit.data, swiftkit.data.plugin, swiftkit.data.registry\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'pyarrow', 'modelscope') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_shipped_cards_validate():
    entries = load_cards(data_dir("dataset_registry"))
    names = [e.name.lower() for e, _ in entries]
    assert len(names) == len(set(names)) >= 200
    for entry, card in entries:
        assert entry.description and entry.tags, card
        if entry.path:
            assert resolve_entry_path(entry).exists(), (card, entry.path)
        for hub_id in (entry.ms_id, entry.hf_id):
            assert hub_id is None or HUB_ID.fullmatch(hub_id), (card, hub_id)


def test_plugin_registers_every_card(registry):
    assert {"self-cognition", "alpaca-gpt4-data-en", "alpaca-gpt4-data-zh", "sharegpt-gpt4"} <= set(registry)
    entry = registry.get("alpaca-gpt4-data-en")
    assert (entry.ms_id, entry.hf_id) == ("AI-ModelScope/alpaca-gpt4-data-en", "vicgalle/alpaca-gpt4")
    assert registry.source("self-cognition") == "dataset_registry/self-cognition.yaml"


def test_self_cognition_data_file():
    path = resolve_entry_path(DatasetEntry(name="x", path="data/self_cognition.jsonl"))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    langs = [r["lang"] for r in rows]
    assert 80 <= len(rows) <= 120
    assert abs(langs.count("en") - langs.count("zh")) <= len(rows) // 5 and set(langs) == {"en", "zh"}
    assert len({r["query"] for r in rows}) == len(rows)
    assert all(set(r) == {"query", "response", "lang"} for r in rows)
    assert all("{{NAME}}" in r["response"] or "{{AUTHOR}}" in r["response"] for r in rows)
    assert sum("{{AUTHOR}}" in r["response"] for r in rows) > len(rows) // 2


def test_calibration_mix_loads_as_chat_rows(registry):
    rows = load_rows(["calibration-mix"], registries=with_datasets(registry))
    assert len(rows) == 96 and registry.source("calibration-mix") == "dataset_registry/calibration.yaml"
    assert all(r["messages"][-1]["role"] == "assistant" and r["messages"][-1]["content"].strip() for r in rows)
    assert len({r["messages"][-2]["content"] for r in rows}) == len(rows)
    texts = [" ".join(m["content"] for m in r["messages"]) for r in rows]
    assert sum(bool(re.search(r"[\u4e00-\u9fff]", t)) and not re.search(r"[\u3040-\u30ff]", t) for t in texts) >= 12
    assert sum("```" in t for t in texts) >= 10
    assert sum(r["messages"][0]["role"] == "system" for r in rows) >= 3
    assert "{{" not in "".join(texts)


def test_self_cognition_one_name(registry):
    rows = load_rows(["self-cognition"], registries=with_datasets(registry), model_name=("Nova",), model_author=("Acme Labs",))
    text = json.dumps([r["messages"] for r in rows], ensure_ascii=False)
    assert "{{" not in text and "}}" not in text
    assert text.count("Nova") > 40 and text.count("Acme Labs") > 40
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)


def test_self_cognition_two_names_map_zh_and_en(registry):
    rows = load_rows(["self-cognition"], registries=with_datasets(registry), model_name=("小新", "Nova"),
                     model_author=("新星实验室", "Acme Labs"))
    zh = [r for r in rows if re.search(r"[\u4e00-\u9fff]", r["messages"][0]["content"])]
    en = [r for r in rows if r not in zh]
    assert zh and en
    zh_text = json.dumps([r["messages"] for r in zh], ensure_ascii=False)
    en_text = json.dumps([r["messages"] for r in en], ensure_ascii=False)
    assert "小新" in zh_text and "新星实验室" in zh_text and "Nova" not in zh_text and "Acme" not in zh_text
    assert "Nova" in en_text and "Acme Labs" in en_text and "小新" not in en_text and "新星" not in en_text
    assert "{{" not in zh_text + en_text


@pytest.mark.parametrize("name, author", [((), ()), (("Nova",), ()), ((), ("Acme",))])
def test_self_cognition_needs_name_and_author(registry, name, author):
    with pytest.raises(DatasetError, match="self-cognition needs --model_name and --model_author"):
        load_rows(["self-cognition#10"], registries=with_datasets(registry), model_name=name, model_author=author)


def test_self_cognition_sampled_beyond_its_size(registry):
    rows = load_rows(["self-cognition#250"], registries=with_datasets(registry), model_name=("Nova",), model_author=("Acme",))
    assert len(rows) == 250


def test_self_cognition_rejects_bad_lang(tmp_path):
    path = tmp_path / "sc.jsonl"
    path.write_text(json.dumps({"query": "who?", "response": "{{NAME}}", "lang": "fr"}) + "\n")
    registry = Registry("dataset")
    registry.register("sc", DatasetEntry(name="sc", path=str(path), preprocessor="self_cognition"))
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}:1: 'lang' must be 'zh' or 'en'"):
        load_rows(["sc"], registries=with_datasets(registry), model_name=("N",), model_author=("A",))


BROKEN_CARDS = {
    "unknown_key": ("datasets:\n  - name: x\n    hf: org/x\n", "datasets[0]: unknown key 'hf'"),
    "missing_name": ("datasets:\n  - hf_id: org/x\n", "datasets[0]: missing key 'name'"),
    "wrong_type": ("datasets:\n  - name: x\n    hf_id: org/x\n    tags: chat\n", "key 'tags' must be a list"),
    "no_source": ("datasets:\n  - name: x\n", "needs at least one of the keys 'path', 'ms_id', 'hf_id'"),
    "bad_columns": ("datasets:\n  - name: x\n    path: a.jsonl\n    columns: [a, b]\n", "key 'columns' must be"),
    "no_datasets_key": ("name: x\npath: a.jsonl\n", "needs a top-level key 'datasets'"),
    "extra_top_key": ("datasets:\n  - name: x\n    path: a.jsonl\nversion: 2\n", "unknown top-level key 'version'"),
    "invalid_yaml": ("datasets:\n  - name: [x\n", "invalid YAML"),
    "duplicate": ("datasets:\n  - {name: x, path: a.jsonl, tags: [sft]}\n  - {name: X, path: b.jsonl, tags: [sft]}\n",
                  "appears twice"),
    "no_task_tag": ("datasets:\n  - {name: x, path: a.jsonl, tags: [math, en]}\n",
                    "tags need exactly one task tag of sft, pretrain, preference, kto, reward, grpo; got none"),
    "two_task_tags": ("datasets:\n  - {name: x, path: a.jsonl, tags: [sft, kto]}\n", "got ['sft', 'kto']"),
    "upper_tag": ("datasets:\n  - {name: x, path: a.jsonl, tags: [SFT]}\n", "list of lowercase strings"),
    "unknown_column": ("datasets:\n  - {name: x, path: a.jsonl, tags: [sft], columns: {q: qeury}}\n",
                       "maps 'q' to 'qeury', which is not a canonical column (did you mean 'query'?)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CARDS))
def test_broken_card_names_file_and_key(tmp_path, case):
    text, expected = BROKEN_CARDS[case]
    card = tmp_path / f"{case}.yaml"
    card.write_text(text)
    with pytest.raises(DatasetError) as info:
        load_card(card)
    assert str(info.value).startswith(f"{card}:")
    assert expected in str(info.value)


def test_card_override_flag_reaches_the_entry(tmp_path):
    card = tmp_path / "mine.yaml"
    card.write_text("datasets:\n  - name: self-cognition\n    path: /data/mine.jsonl\n    tags: [sft]\n    override: true\n")
    (entry,) = load_card(card)
    assert entry.override is True and entry.split == "train" and entry.columns == {}


# --- hubs: no network here, and an id that exists nowhere fails the same way online -------------

MISSING_ID = "swiftkit-test-nobody/no-such-dataset-3f9c"


@pytest.mark.parametrize("use_hf, hub", [(False, "ModelScope"), (True, "Hugging Face")])
def test_hub_id_fails_fast_with_clear_error(use_hf, hub, tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetError) as info:
        load_rows([MISSING_ID], registries=empty_registries(), use_hf=use_hf, cache_dir=str(tmp_path))
    assert time.monotonic() - start < 20
    msg = str(info.value)
    assert MISSING_ID in msg and hub in msg and "local file" in msg


def test_hf_offline_mode_error_names_id(tmp_path):
    """With the hub library's own offline switch, the cache is all there is: a clear error, fast."""
    code = (
        "from swiftkit.data import load_rows, DatasetError\n"
        "from swiftkit.core.plugins import Registries\n"
        "from swiftkit.core.registry import Registry\n"
        "empty = Registries(*(Registry(k) for k in ('model', 'dataset', 'template', 'preprocessor', 'reward')))\n"
        "try:\n"
        f"    load_rows(['{MISSING_ID}'], registries=empty, use_hf=True, cache_dir={str(tmp_path)!r})\n"
        "except DatasetError as exc:\n"
        "    print('ERROR', exc)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    out = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERROR ") and MISSING_ID in out.stdout and "Hugging Face hub" in out.stdout


def test_registered_hub_entry_picks_the_selected_hub(registry):
    from swiftkit.data.loader import hub_source

    entry = registry.get("alpaca-gpt4-data-en")
    assert hub_source(entry, use_hf=False) == ("AI-ModelScope/alpaca-gpt4-data-en", False)
    assert hub_source(entry, use_hf=True) == ("vicgalle/alpaca-gpt4", True)
    only_ms = DatasetEntry(name="m", ms_id="org/m")
    only_hf = DatasetEntry(name="h", hf_id="org/h")
    assert hub_source(only_ms, use_hf=True) == ("org/m", False)
    assert hub_source(only_hf, use_hf=False) == ("org/h", True)


def test_unknown_preprocessor_is_caught_once_all_plugins_registered(tmp_path):
    from swiftkit.core.plugins import PluginError

    plugin = tmp_path / "cards.py"
    plugin.write_text(
        "import swiftkit\n"
        "from swiftkit.data.registry import DatasetEntry\n"
        "@swiftkit.hookimpl\n"
        "def swiftkit_register_datasets(registry):\n"
        "    registry.register('x', DatasetEntry(name='x', path='a.jsonl', preprocessor='self_cogniton'),\n"
        "                      source='cards.py')\n"
    )
    with pytest.raises(PluginError, match=r"dataset 'x' \(cards\.py, from plugin 'file:.*cards\.py' \(file .*\)\): "
                                          r"unknown preprocessor 'self_cogniton' \(did you mean 'self_cognition'\?\)"):
        builtin_host([str(plugin)]).registries  # noqa: B018 - registration runs on first use


def test_plugin_preprocessor_serves_a_plugin_dataset(tmp_path):

    data = tmp_path / "a.jsonl"
    data.write_text(json.dumps({"query": "HELLO", "response": "WORLD"}) + "\n")
    plugin = tmp_path / "lower.py"
    plugin.write_text(
        "import swiftkit\n"
        "from swiftkit.data.registry import DatasetEntry\n"
        "def lowercase(rows, *, model_name=(), model_author=(), source=''):\n"
        "    return [{**r, 'query': r['query'].lower()} for r in rows]\n"
        "@swiftkit.hookimpl\n"
        "def swiftkit_register_preprocessors(registry):\n"
        "    registry.register('lowercase', lowercase, source='lower.py')\n"
        "@swiftkit.hookimpl\n"
        f"def swiftkit_register_datasets(registry):\n"
        f"    registry.register('shouty', DatasetEntry(name='shouty', path={str(data)!r}, preprocessor='lowercase'),\n"
        "                      source='lower.py')\n"
    )
    regs = builtin_host([str(plugin)]).registries
    rows = load_rows(["shouty"], registries=regs)
    assert rows[0]["messages"][0]["content"] == "hello" and rows[0]["messages"][1]["content"] == "WORLD"


def test_supported_datasets_page_is_fresh():
    from pathlib import Path

    from swiftkit.data import docgen

    page = Path(__file__).resolve().parents[3] / "docs" / "supported-datasets.md"
    assert page.read_text(encoding="utf-8") == docgen.render(), (
        "docs/supported-datasets.md is stale: run `python -m swiftkit.data.docgen > docs/supported-datasets.md`"
    )
    assert docgen.render().count("\n| `") == len(load_cards(data_dir("dataset_registry")))


def test_list_datasets_filters_by_tag_and_prints_json(capsys):
    from swiftkit.cli.main import main

    assert main(["list", "datasets", "--tag", "kto", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) >= 5 and all("kto" in d["tags"] for d in listed)
    assert {"name", "ms_id", "hf_id", "subsets", "split", "columns", "source"} <= set(listed[0])
    assert main(["list", "datasets", "--tag", "preference", "--tag", "zh"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("# ") and out[-1].endswith("datasets tagged preference, zh")
    assert all("preference" in line and "zh" in line for line in out[:-1])
    assert main(["list", "datasets", "--tag", "no-such-tag"]) == 0
    assert "# known tags:" in capsys.readouterr().out
