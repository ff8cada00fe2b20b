"""Coda Voice: a real-time spoken conversation engine."""

__version__ = "0.1.0"
