"""Download a model snapshot from ModelScope or the Hugging Face hub, failing fast when offline.

Both hub libraries retry for a long time when the network is down, so the hub's host is probed
first with a short TCP connect (:mod:`swiftkit.core.netprobe`); when it cannot be reached, only the local
cache is consulted.
"""

from __future__ import annotations

import time
from pathlib import Path

from swiftkit.core.netprobe import PROBE_TIMEOUT_S, modelscope_endpoints, unreachable_reason
from swiftkit.models.errors import ModelNotFoundError

HUB_NAMES = {"modelscope": "ModelScope", "hf": "the Hugging Face hub"}
# Files a transformers checkpoint does not need: original (non-HF) weights and other frameworks.
IGNORE_PATTERNS = [
    "original/*",
    "*.pth",
    "*.gguf",
    "*.onnx",
    "*.onnx_data",
    "*.msgpack",
    "*.h5",
    "*.ot",
    "*.tflite",
]


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or "no details"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hub_endpoints(hub: str) -> tuple[list[str], bool]:
    """(endpoint URLs the library will use, whether the library is configured offline)."""
    if hub == "hf":
        from huggingface_hub import constants  # defers huggingface_hub

        return [constants.ENDPOINT], bool(constants.HF_HUB_OFFLINE)
    return modelscope_endpoints(), False


RETRIES = 3  # attempts for a reachable hub that drops the connection mid-download
TRANSIENT = (ConnectionError, TimeoutError)


def with_retries(fn, attempts: int = RETRIES, backoff_s: float = 2.0, sleep=None):
    """``fn()``, retried on connection errors and timeouts (``requests``' and ``httpx``' derive
    from the built-in ones or are matched by name) with exponential back-off; other errors and
    the last failure propagate."""

    sleep = time.sleep if sleep is None else sleep
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            transient = isinstance(exc, TRANSIENT) or type(exc).__name__ in (
                "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "ChunkedEncodingError",
                "RemoteDisconnected", "IncompleteRead",
            )
            if not transient or attempt == attempts:
                raise
            sleep(backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _snapshot(
    hub: str, model_id: str, revision: str | None, cache_dir: Path, local_only: bool
) -> str:
    kwargs = dict(revision=revision, cache_dir=str(cache_dir), local_files_only=local_only,
                  ignore_patterns=IGNORE_PATTERNS)
    if hub == "hf":
        from huggingface_hub import snapshot_download  # defers huggingface_hub

        return snapshot_download(model_id, etag_timeout=PROBE_TIMEOUT_S * 2, **kwargs)
    from modelscope.hub.snapshot_download import snapshot_download  # defers modelscope

    return snapshot_download(model_id, **kwargs)


def download(
    model_id: str, hub: str, *, revision: str | None, cache_dir: Path, advice: str = ""
) -> str:
    """Download ``model_id`` from ``hub`` ("modelscope" or "hf") into ``cache_dir``; its local path.

    Raises ModelNotFoundError naming the id, the hub and the reason in one line, followed by
    ``advice`` (what the user can do instead).
    """
    endpoints, offline = _hub_endpoints(hub)
    reason = "the library is set to offline mode" if offline else unreachable_reason(endpoints)
    try:
        local_only = reason is not None
        path = with_retries(lambda: _snapshot(hub, model_id, revision, cache_dir, local_only=local_only),
                            attempts=1 if local_only else RETRIES)
    except Exception as exc:  # each library has its own error classes; all mean "not available"
        if reason is None:
            reason = _one_line(exc)
        else:
            reason = f"{reason}, and no copy is cached in {cache_dir}"
        sep = "" if not advice or advice.startswith(" ") else ". "
        raise ModelNotFoundError(
            f"cannot download {model_id!r} from {HUB_NAMES[hub]}: {reason}{sep}{advice}"
        ) from exc
    return str(path)
