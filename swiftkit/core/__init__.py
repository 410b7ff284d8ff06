"""The bottom layer every other one may import: errors, the plugin host and its hookspecs, registries,
choosing parts by name, atomic writes and run folders, checkpoints, registry card checks, shipped
data paths and the one place upstream workarounds live (``_compat``). Nothing here imports another
swiftkit package."""
