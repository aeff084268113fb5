"""The ``datn`` command."""
