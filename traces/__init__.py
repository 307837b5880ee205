"""Request and power traces: load any supported format into one canonical Arrow schema.

This package knows nothing of GPUs or models. See :mod:`traces.schema` for the canonical tables.
"""
