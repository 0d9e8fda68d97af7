"""Benchmarks of the repository API against the physical limit: ``python -m benchmarks.run``."""
