"""Encoded rows in compact arrays, and the on-disk cache that skips tokenization on a rerun.

An :class:`EncodedDataset` holds every row's token ids and labels concatenated in two int32 arrays,
with int64 offsets marking where each row starts (``offsets[i]:offsets[i + 1]``). That is the form
kept in memory for training and the form written to the cache, so a cache hit is three array loads.

A cache entry lives in ``<cache_dir>/<key>/`` where ``key`` is the sha256 of everything that
decides the encoding (:func:`cache_key`). Entries are written to a temporary folder and renamed
into place, so a crashed run never leaves a half-written entry under a valid key; an entry that
does not check out on load (missing file, truncated array, inconsistent offsets) is ignored and
rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import swiftkit
from swiftkit.data import data_fingerprint

if TYPE_CHECKING:  # numpy loads with the first cache read or write, not with `import swiftkit`
    import numpy as np

FORMAT_VERSION = 1
_ARRAYS = ("input_ids", "labels", "offsets")


class EncodedDataset:
    """Encoded rows (``{"input_ids": [...], "labels": [...]}`` per index) backed by flat arrays.

    A map-style dataset: ``transformers.Trainer`` and ``torch.utils.data.DataLoader`` take it as is.
    ``from_cache`` says whether it was loaded from ``cache_path`` instead of being tokenized.
    """

    def __init__(self, input_ids: np.ndarray, labels: np.ndarray, offsets: np.ndarray):
        self.input_ids = input_ids
        self.labels = labels
        self.offsets = offsets
        self.from_cache = False
        self.cache_path: Path | None = None

    @classmethod
    def from_rows(cls, rows: list[dict]) -> EncodedDataset:
        import numpy as np  # defers numpy
        lengths = np.fromiter((len(r["input_ids"]) for r in rows), dtype=np.int64, count=len(rows))
        return cls.from_chunks(
            [np.fromiter((t for r in rows for t in r["input_ids"]), dtype=np.int32)],
            [np.fromiter((t for r in rows for t in r["labels"]), dtype=np.int32)],
            [lengths],
        )

    @classmethod
    def from_chunks(cls, ids: list[np.ndarray], labels: list[np.ndarray],
                    lengths: list[np.ndarray]) -> EncodedDataset:
        """Join per-chunk arrays (as the encoding workers return them) in order."""
        import numpy as np  # defers numpy
        lens = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)
        flat_labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int32)
        return cls(flat.astype(np.int32, copy=False), flat_labels.astype(np.int32, copy=False), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"row {index} is out of range for {n} encoded rows")
        index %= n
        a, b = self.offsets[index], self.offsets[index + 1]
        return {"input_ids": self.input_ids[a:b].tolist(), "labels": self.labels[a:b].tolist()}

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per row."""
        import numpy as np  # defers numpy
        return np.diff(self.offsets)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides how the tokenizer splits text: vocab, merges, added tokens, normalizer.

    Fast tokenizers serialize their whole pipeline (``backend_tokenizer.to_str()``); others fall
    back to the sorted vocabulary (added tokens included) and their class name.
    """
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(b"fast\0" + backend.to_str().encode("utf-8"))
    else:
        vocab = sorted(tokenizer.get_vocab().items())
        digest.update(f"slow\0{type(tokenizer).__name__}\0".encode() + json.dumps(vocab).encode("utf-8"))
    special = {k: str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())}
    digest.update(json.dumps(special, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def cache_key(rows: list[dict], template) -> str:
    """sha256 over the rows, the template, the tokenizer and the encoding options."""
    import tokenizers  # defers tokenizers
    import transformers  # defers transformers

    payload = {
        "format": FORMAT_VERSION,
        "swiftkit": swiftkit.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "data": data_fingerprint(rows),
        "template": template.fingerprint,
        "template_name": template.name,
        "tokenizer": tokenizer_fingerprint(template.tokenizer),
        "max_length": template.max_length,
        "truncation_strategy": template.truncation_strategy,
        "loss_scale": template.loss_scale,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def default_cache_dir() -> Path:
    """``~/.cache/swiftkit/encoded``."""
    return Path.home() / ".cache" / "swiftkit" / "encoded"


def load_entry(root: Path, key: str, vocab_size: int | None = None) -> tuple[EncodedDataset, int] | None:
    """The cached rows and skipped count under ``root/key``, or None when absent or not valid."""
    import numpy as np  # defers numpy
    entry = Path(root) / key
    if not entry.is_dir():
        return None
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION or meta.get("key") != key:
            return None
        arrays = {name: np.load(entry / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
        data = EncodedDataset(arrays["input_ids"], arrays["labels"], arrays["offsets"])
        if not _consistent(data, meta, vocab_size):
            return None
        skipped = int(meta["skipped"])
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    data.from_cache, data.cache_path = True, entry
    return data, skipped


def _consistent(data: EncodedDataset, meta: dict, vocab_size: int | None) -> bool:
    import numpy as np  # defers numpy
    ids, labels, offsets = data.input_ids, data.labels, data.offsets
    if ids.dtype != np.int32 or labels.dtype != np.int32 or offsets.dtype != np.int64:
        return False
    if ids.ndim != 1 or labels.shape != ids.shape or offsets.ndim != 1:
        return False
    if len(offsets) != int(meta["rows"]) + 1 or len(ids) != int(meta["tokens"]):
        return False
    if offsets[0] != 0 or offsets[-1] != len(ids) or (np.diff(offsets) < 0).any():
        return False
    if len(ids) and (ids.min() < 0 or (vocab_size is not None and ids.max() >= vocab_size)):
        return False
    return not (len(labels) and labels.min() < -100)


def save_entry(root: Path, key: str, data: EncodedDataset, skipped: int) -> Path:
    """Write ``data`` under ``root/key`` atomically (temporary folder, then rename); returns the path.

    An existing entry under the same key (one that failed to load) is replaced; when another
    process renames its copy into place first, that copy is kept.
    """
    import numpy as np  # defers numpy
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:16]}-", dir=root))
    stale = root / f"{tmp.name}-stale"
    try:
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(data, name), allow_pickle=False)
        meta = {"format": FORMAT_VERSION, "key": key, "rows": len(data), "tokens": data.num_tokens,
                "skipped": int(skipped)}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        with contextlib.suppress(FileNotFoundError):
            os.rename(final, stale)  # the entry that failed to load; readers keep their open files
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)
    return final
