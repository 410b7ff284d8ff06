"""Command-line entry point (``swiftkit``) and flag parsing generated from the typed configs."""
