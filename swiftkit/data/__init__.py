"""The data layer: load rows from files, registered datasets and hubs as canonical conversations.

``load_rows(["train.jsonl", "self-cognition#200"], model_name=("Nova",), model_author=("Acme",))``
returns ``[{"messages": [{"role": ..., "content": ...}, ...], "_origin": "train.jsonl:3"}, ...]``
(``{"text": ..., "_origin": ...}`` rows with ``text_only=True``). See ``docs/datasets.md``.
"""

from swiftkit.data.errors import DatasetError
from swiftkit.data.loader import data_fingerprint, load_rows, split_rows
from swiftkit.data.registry import DatasetEntry

__all__ = ["DatasetEntry", "DatasetError", "data_fingerprint", "load_rows", "split_rows"]
