"""sparseviz: how few pixels it takes to fool an image classifier, and why."""

__version__ = "0.1.0"
