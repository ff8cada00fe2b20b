"""Tools the assistant can call during a turn: a registry and the built-in tools."""
