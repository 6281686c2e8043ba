"""Benchmarks for retrotread: ``python -m benchmarks.run [--quick] [--json FILE]``."""
