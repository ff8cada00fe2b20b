"""Locating and assembling the embedded models that ship inside registry packages."""
