"""Benchmarks: each module is runnable as ``python -m bench.<name>`` and prints its figures."""
