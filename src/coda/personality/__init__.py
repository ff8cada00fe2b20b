"""Personality: traits that shape what Coda says and how it sounds, learned from the user."""
