"""Benchmarks: `kubep4 bench deploy | schedule | compile` (figures in docs/benchmarks.md)."""
