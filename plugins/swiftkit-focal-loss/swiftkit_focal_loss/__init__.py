"""swiftkit-focal-loss: a third-party swiftkit plugin adding ``--loss_type focal``."""

__version__ = "0.1.0"
