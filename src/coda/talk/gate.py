"""Push-to-talk: the microphone counts only while the talk key is held.

A terminal reports key presses, not releases. Held, a key repeats (after the
keyboard's repeat delay, ~250-660 ms), so the key counts as held until no press
has come for ``HOLD_SECONDS``. Enter toggles instead, for keyboards or
terminals that do not repeat, and for input from a pipe (one line, one toggle).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

HOLD_SECONDS = 0.7
"""How long after the last repeat of a held key it still counts as held."""
TALK_KEY = " "
TOGGLE_KEYS = ("\n", "\r")

Clock = Callable[[], float]


class PushToTalk:
    """Whether the user is talking, from their key presses.

    Args:
        clock: Seconds, monotonic (injected in tests).
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._held_until = float("-inf")
        self._toggled = False
        self._lock = threading.Lock()

    def key(self, char: str) -> None:
        """One key press (or repeat); other keys than space and Enter are ignored."""
        with self._lock:
            if char == TALK_KEY:
                self._held_until = self._clock() + HOLD_SECONDS
            elif char in TOGGLE_KEYS:
                self._toggled = not self._toggled

    @property
    def open(self) -> bool:
        """Whether the microphone counts now."""
        with self._lock:
            return self._toggled or self._clock() < self._held_until


@contextlib.contextmanager
def keys_to(gate: PushToTalk, stream: TextIO = sys.stdin) -> Iterator[None]:
    """Feed ``stream``'s keys to ``gate`` from a thread, for the duration of the block.

    A terminal is put in cbreak mode (keys arrive at once, unechoed) and restored after.
    """
    restore: Callable[[], None] = lambda: None  # noqa: E731 - nothing to restore off a terminal
    if stream.isatty():
        import termios
        import tty

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        restore = lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)  # noqa: E731

    def read() -> None:
        while char := stream.read(1):
            gate.key(char)

    # A daemon thread: a blocked read on stdin cannot be interrupted, and must not
    # keep the process alive once the conversation ends.
    threading.Thread(target=read, name="push-to-talk", daemon=True).start()
    try:
        yield
    finally:
        restore()
