"""``coda eval``: scripted conversations that measure what Coda remembers and says."""
