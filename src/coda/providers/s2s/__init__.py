"""Speech-to-speech providers."""
