"""Persistence of conversations and their turns."""
