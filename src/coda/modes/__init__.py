"""Responders (the STT→LLM→TTS cascade, Moshi) and how a turn picks between them."""
