"""Benchmark scripts: each prints its numbers and the command that reproduces them."""
