"""Coda over the Wyoming protocol (Home Assistant's voice services): ``coda wyoming``."""
