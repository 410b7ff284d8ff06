"""Resolving --model: local directories, registered names, hub ids (offline), unknown names."""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from swiftkit.core.netprobe import unreachable_reason
from swiftkit.core.registry import Registry, RegistryError
from swiftkit.models import ModelEntry, ModelNotFoundError, resolve_model

MISSING_ID = "swiftkit-tests/no-such-model-0"


def test_local_dir_resolves_with_inferred_type(tiny_model_dir, model_registry):
    folder = tiny_model_dir("qwen2")
    resolved = resolve_model(str(folder), registry=model_registry)
    assert resolved.path == str(folder.resolve())
    assert (resolved.source, resolved.model_type, resolved.entry, resolved.name) == (
        "local",
        "qwen2",
        None,
        str(folder),
    )


def test_explicit_model_type_overrides_and_is_checked(tiny_model_dir, model_registry):
    folder = str(tiny_model_dir("llama"))
    resolved = resolve_model(folder, model_type="qwen2_5", registry=model_registry)
    assert (resolved.model_type, resolved.entry.type) == ("qwen2", "qwen2_5")  # a registry type
    assert resolve_model(folder, model_type="Mistral", registry=model_registry).model_type == "mistral"
    with pytest.raises(
        RegistryError, match=r"unknown --model_type 'qwen2_55' \(did you mean 'qwen2_5'\?\)"
    ):
        resolve_model(folder, model_type="qwen2_55", registry=model_registry)


def test_local_dir_without_config_json(tiny_model_dir, tmp_path, model_registry):
    folder = tmp_path / "weights-only"
    shutil.copytree(tiny_model_dir("llama"), folder)
    (folder / "config.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"weights-only.*has no config\.json"):
        resolve_model(str(folder), registry=model_registry)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match=r"pass it as --adapters"):
        resolve_model(str(tmp_path / "adapter"), registry=model_registry)


@pytest.mark.serial  # timed: run alone, not beside another test
def test_missing_local_path_is_not_sent_to_a_hub(tmp_path, model_registry):
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match=r"local model directory .* does not exist"):
        resolve_model(str(tmp_path / "nope" / "model"), registry=model_registry)
    with pytest.raises(ModelNotFoundError, match=r"is a file"):
        resolve_model(__file__, registry=model_registry)
    assert time.monotonic() - start < 1


def test_unknown_short_name_suggests_the_closest(model_registry):
    with pytest.raises(
        ModelNotFoundError,
        match=r"unknown model 'qwen2.5-0.5b-instruc' \(did you mean 'qwen2.5-0.5b-instruct'\?\)",
    ):
        resolve_model("qwen2.5-0.5b-instruc", registry=model_registry)
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'zzz'; pass a local directory"):
        resolve_model("zzz", registry=model_registry)


@pytest.mark.parametrize(
    "use_hf, hub, advice",
    [(False, "ModelScope", "add --use_hf"), (True, "the Hugging Face hub", "drop --use_hf")],
)
def test_hub_id_offline_fails_fast_with_a_clear_error(
    tmp_path, model_registry, use_hf, hub, advice
):
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(MISSING_ID, use_hf=use_hf, cache_dir=str(tmp_path), registry=model_registry)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert f"cannot download '{MISSING_ID}' from {hub}: " in message
    assert "local model directory" in message and advice in message
    assert "\n" not in message


def test_registered_name_falls_back_to_the_other_hub(tmp_path):
    registry = Registry("model")
    registry.register(
        "ghost", ModelEntry(name="ghost", family="llama", ms_id=None, hf_id=MISSING_ID)
    )
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("Ghost", cache_dir=str(tmp_path), registry=registry)
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert f"cannot download '{MISSING_ID}' from the Hugging Face hub" in message
    assert "no ModelScope id is registered for 'ghost'" in message


def test_invalid_hub_id(model_registry):
    with pytest.raises(ModelNotFoundError, match=r"neither a local directory nor a hub id"):
        resolve_model("owner/name with spaces", registry=model_registry)


def test_reachability_probe_uses_real_sockets():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert unreachable_reason([f"http://127.0.0.1:{port}"]) is None
    reason = unreachable_reason([f"http://127.0.0.1:{port}"], timeout=2)  # closed now
    assert reason.startswith("cannot connect (127.0.0.1:") and str(port) in reason


def test_offline_hub_id_uses_the_local_hub_cache(tiny_model_dir, tmp_path, model_registry):
    from huggingface_hub import constants

    if unreachable_reason([constants.ENDPOINT], timeout=2) is None:
        pytest.skip("the Hugging Face hub is reachable: this test covers the offline path")
    # The layout huggingface_hub writes: refs/<revision> names a snapshot folder.
    repo = tmp_path / "huggingface" / "models--swiftkit-tests--tiny-qwen3"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_model_dir("qwen3"), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    resolved = resolve_model(
        "swiftkit-tests/tiny-qwen3", use_hf=True, cache_dir=str(tmp_path), registry=model_registry
    )
    assert resolved.path == str(repo / "snapshots" / commit)
    assert (resolved.source, resolved.model_type) == ("hf", "qwen3")


def test_offline_hub_id_uses_the_modelscope_cache(tiny_model_dir, tmp_path, model_registry):
    from swiftkit.core.netprobe import modelscope_endpoints

    if unreachable_reason(modelscope_endpoints(), timeout=2) is None:
        pytest.skip("ModelScope is reachable: this test covers the offline path")
    # The layout modelscope writes: models/<owner>--<name>/snapshots/<revision>.
    folder = tmp_path / "modelscope" / "models" / "swiftkit-tests--tiny-qwen2" / "snapshots" / "master"
    shutil.copytree(tiny_model_dir("qwen2"), folder)
    resolved = resolve_model("swiftkit-tests/tiny-qwen2", cache_dir=str(tmp_path), registry=model_registry)
    assert (resolved.path, resolved.source, resolved.model_type) == (str(folder), "modelscope", "qwen2")


def test_revision_pins_the_cached_snapshot(tiny_model_dir, tmp_path, model_registry):
    from huggingface_hub import constants

    if unreachable_reason([constants.ENDPOINT], timeout=2) is None:
        pytest.skip("the Hugging Face hub is reachable: this test covers the offline path")
    repo = tmp_path / "huggingface" / "models--swiftkit-tests--pinned"
    old, new = "1" * 40, "2" * 40
    shutil.copytree(tiny_model_dir("llama"), repo / "snapshots" / old)
    shutil.copytree(tiny_model_dir("qwen3"), repo / "snapshots" / new)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(new)
    (repo / "refs" / "v1.0").write_text(old)
    latest = resolve_model("swiftkit-tests/pinned", use_hf=True, cache_dir=str(tmp_path), registry=model_registry)
    pinned = resolve_model("swiftkit-tests/pinned", use_hf=True, revision="v1.0", cache_dir=str(tmp_path),
                           registry=model_registry)
    assert (latest.model_type, pinned.model_type) == ("qwen3", "llama")
    assert pinned.path == str(repo / "snapshots" / old)


def test_downloads_retry_transient_errors_only():
    from swiftkit.models.hub import with_retries

    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset by peer")
        return "done"

    assert with_retries(flaky, attempts=3, backoff_s=0.5, sleep=waits.append) == "done"
    assert waits == [0.5, 1.0]

    def broken():
        raise ValueError("repository not found")

    with pytest.raises(ValueError):
        with_retries(broken, attempts=3, sleep=waits.append)
    assert waits == [0.5, 1.0]  # not retried

    def down():
        raise ConnectionError("network is unreachable")

    with pytest.raises(ConnectionError):
        with_retries(down, attempts=2, backoff_s=0.5, sleep=waits.append)
    assert waits == [0.5, 1.0, 0.5]  # one wait between the two attempts, then the error
