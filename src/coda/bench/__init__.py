"""Benchmarks behind `coda bench ...`: they print figures and ratios."""
