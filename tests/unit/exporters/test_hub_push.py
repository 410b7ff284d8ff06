"""--push_to_hub through the real huggingface_hub and modelscope clients, against local stand-ins of the hub APIs
(tests/unit/exporters/fake_hub.py): what arrives, and the one-line errors when the hub refuses."""

from __future__ import annotations

import hashlib
import os

import pytest
from fake_hub import FakeHfHub, FakeModelScopeHub

from swiftkit.config import ExportConfig, QuantizeConfig
from swiftkit.exporters.hub_push import HubPushError, push_folder
from swiftkit.exporters.model_card import write_model_card

WEIGHTS = os.urandom(100_000)  # above ModelScope's inline limit (64 KB): it goes through the LFS blob upload


@pytest.fixture(autouse=True)
def hub_env(monkeypatch, tmp_path):
    """Credentials in the clients' own variables, client state under tmp_path, no proxy for 127.0.0.1."""
    monkeypatch.setenv("HF_TOKEN", "good-token")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "good-token")
    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "ms-home"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    monkeypatch.delenv("MODELSCOPE_ENDPOINT", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # The ModelScope client reads its token and home once per process into a default config; each test has its own.
    from modelscope_hub.config import set_default_config

    set_default_config(None)
    yield
    set_default_config(None)


@pytest.fixture
def folder(tmp_path):
    """A finished export folder with its model card."""
    out = tmp_path / "tiny-torchao-int8"
    out.mkdir()
    (out / "config.json").write_text('{"model_type": "llama"}\n')
    (out / "generation_config.json").write_text('{"eos_token_id": [2, 7]}\n')
    (out / "model.safetensors").write_bytes(WEIGHTS)
    cfg = QuantizeConfig.from_flat({"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "quant_method": "torchao",
                                    "quant_bits": 8})
    write_model_card(out, info={"method": "torchao", "label": "torchao-int8"}, config=cfg)
    return out


def config(hub, *, use_hf: bool, private: bool = False, repo: str = "alice/tiny-int8") -> ExportConfig:
    return ExportConfig.from_flat({"model": "m", "use_hf": use_hf, "push_to_hub": True, "hub_model_id": repo,
                                   "hub_private_repo": private, "hub_endpoint": hub.url,
                                   "commit_message": "tiny int8 export"})


def local_files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# -- Hugging Face ------------------------------------------------------------------------------------


def test_hf_push_creates_a_private_repo_and_uploads_every_file(folder):
    expected = local_files(folder)
    with FakeHfHub() as hub:
        url = push_folder(folder, config(hub, use_hf=True, private=True))
    assert url == f"{hub.url}/alice/tiny-int8"
    assert hub.repos == {"alice/tiny-int8": {"private": True, "type": "model"}}
    assert hub.files["alice/tiny-int8"] == expected  # README.md (the card) and the weights, byte for byte
    assert set(expected) == {"README.md", "config.json", "generation_config.json", "model.safetensors"}
    assert [c["summary"] for c in hub.commits] == ["tiny int8 export"]
    assert hub.validated == [expected["README.md"].decode()]  # the card's front matter passed the hub's check
    assert all(r.headers["authorization"] == "Bearer good-token" for r in hub.requests)
    assert local_files(folder) == expected


def test_hf_push_into_an_existing_repo_keeps_it_and_commits(folder):
    with FakeHfHub() as hub:
        hub.repos["alice/tiny-int8"] = {"private": False, "type": "model"}
        hub.files["alice/tiny-int8"] = {"old.txt": b"old"}
        push_folder(folder, config(hub, use_hf=True, private=True))
    assert hub.repos["alice/tiny-int8"]["private"] is False  # an existing repository is not changed
    assert set(hub.files["alice/tiny-int8"]) == {"old.txt", *local_files(folder)}


def test_hf_refused_token_is_one_line_with_the_login_hint(folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "expired-token")
    with FakeHfHub() as hub, pytest.raises(HubPushError) as err:
        push_folder(folder, config(hub, use_hf=True))
    message = str(err.value)
    assert "\n" not in message
    assert "creating alice/tiny-int8 on the Hugging Face hub" in message and "HTTP 401" in message
    assert "Invalid credentials" in message  # the hub's own reason
    assert "hf auth login" in message and "HF_TOKEN" in message
    assert hub.files == {}


def test_hf_without_any_token_fails_before_a_request(folder, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with FakeHfHub() as hub, pytest.raises(HubPushError, match=r"no Hugging Face token .*hf auth login.*HF_TOKEN"):
        push_folder(folder, config(hub, use_hf=True))
    assert hub.requests == []


def test_hf_refused_commit_names_the_upload_step_and_status(folder):
    with FakeHfHub() as hub, pytest.raises(HubPushError) as err:
        hub.fail["commit"] = (403, "You have read access but not the required permissions for this operation")
        push_folder(folder, config(hub, use_hf=True))
    message = str(err.value)
    assert "\n" not in message
    assert "uploading to alice/tiny-int8" in message and "HTTP 403" in message
    assert "write access to that namespace" in message and "hf auth login" in message


def test_hf_unreachable_endpoint_is_one_line(folder):
    cfg = ExportConfig.from_flat({"model": "m", "use_hf": True, "push_to_hub": True, "hub_model_id": "alice/x",
                                  "hub_endpoint": "http://127.0.0.1:9"})  # nothing listens on port 9
    with pytest.raises(HubPushError, match=r"cannot be reached .*--hub_endpoint") as err:
        push_folder(folder, cfg)
    assert "\n" not in str(err.value)


# -- ModelScope --------------------------------------------------------------------------------------


def test_modelscope_push_creates_the_repo_and_uploads_every_file(folder):
    expected = local_files(folder)
    with FakeModelScopeHub() as hub:
        url = push_folder(folder, config(hub, use_hf=False, private=True))
    assert url == f"{hub.url}/models/alice/tiny-int8"
    create = next(r for r in hub.requests if r.path == "/api/v1/models")
    assert create.json()["Path"] == "alice" and create.json()["Name"] == "tiny-int8"
    assert hub.repos["alice/tiny-int8"]["private"] is True  # Visibility 1
    assert hub.files["alice/tiny-int8"] == expected
    assert list(hub.blobs) == [hashlib.sha256(WEIGHTS).hexdigest()]  # the weights went through the LFS upload
    assert all("tiny int8 export" in c["summary"] for c in hub.commits)
    assert local_files(folder) == expected  # the uploader's resume cache is not left in the artifact


def test_modelscope_refused_token_is_one_line_with_the_login_hint(folder, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "expired-token")
    with FakeModelScopeHub() as hub, pytest.raises(HubPushError) as err:
        push_folder(folder, config(hub, use_hf=False))
    message = str(err.value)
    assert "\n" not in message
    assert "creating alice/tiny-int8 on the ModelScope hub" in message and "HTTP 401" in message
    assert "modelscope login" in message and "MODELSCOPE_API_TOKEN" in message
    assert [r.path for r in hub.requests] == ["/api/v1/models"]


def test_modelscope_refused_commit_reports_the_status_of_the_upload(folder):
    with FakeModelScopeHub() as hub, pytest.raises(HubPushError) as err:
        hub.fail["commit"] = (403, "no write permission on alice")
        push_folder(folder, config(hub, use_hf=False))
    message = str(err.value)
    assert "\n" not in message
    assert "uploading to alice/tiny-int8 on the ModelScope hub" in message
    assert "HTTP 403" in message and "no write permission on alice" in message
    assert "MODELSCOPE_API_TOKEN" in message
    assert any(r.path == "/api/v1/repos/models/alice/tiny-int8/commit/master" for r in hub.requests)
    assert hub.files["alice/tiny-int8"] == {}


def test_push_refuses_an_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with FakeHfHub() as hub, pytest.raises(HubPushError, match="holds no files"):
        push_folder(empty, config(hub, use_hf=True))
    assert hub.requests == []
