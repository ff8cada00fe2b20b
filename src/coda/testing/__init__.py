"""Real peers for tests and benchmarks (the genuine Moshi server with tiny weights)."""
