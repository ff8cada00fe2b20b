"""``coda talk``: a live conversation on this machine's microphone and speakers.

The sound card is one more transport in front of the turn pipeline: captured
frames go into a ``DuplexSession`` (echo cancellation, turn-taking, barge-in),
and its events come back as printed text and reply audio on the speakers.
"""
