"""Long-term memory: facts and preferences learned from turns, found again by meaning."""
