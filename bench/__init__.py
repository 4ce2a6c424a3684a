"""Benchmarks that print figures next to a same-run baseline."""
