"""Fixtures of the exporter tests: a tiny saved model loaded as the exporters receive it."""
