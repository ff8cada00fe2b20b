"""Live, full-duplex sessions: turn-taking and barge-in."""
