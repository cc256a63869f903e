"""kvmfx benchmarks: ``python -m bench`` prints a table (docs/performance.md)."""
