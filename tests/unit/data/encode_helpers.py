"""Shared by the encoding and cache tests: a real template that counts its encode calls."""

from __future__ import annotations

from swiftkit.templates.template import Template


class CountingTemplate(Template):
    """A real template that counts how often it encodes a row."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def encode(self, row):
        self.calls += 1
        return super().encode(row)

    def encode_many(self, rows):
        self.calls += len(rows)
        return super().encode_many(rows)
