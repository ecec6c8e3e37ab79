"""lpbf-edge: the box that watches, super-resolves and flags every LPBF layer."""

__version__ = "0.1.0"
