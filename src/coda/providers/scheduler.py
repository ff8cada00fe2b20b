"""One scheduler in front of the embedded models: the turn that has not spoken goes first.

The embedded LLM and TTS share this machine's cores. Their work is cut into
slices (one token of the LLM, one clause of speech) and every slice waits for
the scheduler, which grants the next one to, in order:

1. a turn that has not spoken yet: its LLM until the first clause is written,
   then the synthesis of that clause;
2. the continuation of a turn already speaking;
3. work for no turn (background learning, summaries, warm-up).

Within a level the older turn goes first. A turn writing its first words
reaches for its next slice a moment after releasing the last, so lower levels
wait ``FIRST_WORDS_GRACE_S`` after each first-words slice before taking the
gate. So no conversation's first words wait behind another's long reply. A
turn's claim (``Ticket``) travels with it in a context variable, set by the
cascade, so providers need no extra arguments.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum

_orders = itertools.count()
FIRST_WORDS_GRACE_S = 0.01
"""After a first-words slice, lower priorities wait this long for the next one (s)."""


class Priority(IntEnum):
    """Who gets the next slice: lower goes first."""

    FIRST_WORDS = 0
    CONTINUATION = 1
    BACKGROUND = 2


@dataclass
class Ticket:
    """One turn's claim on the embedded models.

    Attributes:
        key: The conversation (the LLM keeps its cached prefix per conversation).
        order: Arrival order; older turns go first within a priority.
        written: The LLM has written the first clause.
        spoken: The first clause is synthesized (the turn has spoken).
    """

    key: str
    order: int = field(default_factory=lambda: next(_orders))
    written: bool = False
    spoken: bool = False

    def priority(self, kind: str) -> Priority:
        """The priority of this turn's next ``kind`` ("llm" or "tts") slice."""
        done = self.written if kind == "llm" else self.spoken
        return Priority.CONTINUATION if done else Priority.FIRST_WORDS


current_ticket: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar(
    "coda_turn_ticket", default=None
)
"""The ticket of the turn the running task works for (None: background work)."""


@dataclass(frozen=True)
class Grant:
    """One slice given out (kept for inspection and tests)."""

    key: str
    kind: str
    priority: Priority


class ComputeScheduler:
    """A priority gate for blocking model calls, taken on the providers' worker threads.

    Args:
        capacity: Slices that may run at once (1: the cores are used by one model
            at a time, as llama.cpp and ONNX Runtime each use them all).
        history: Grants remembered in ``grants``.
    """

    def __init__(self, capacity: int = 1, history: int = 512) -> None:
        self._capacity = capacity
        self._busy = 0
        self._waiting: list[tuple[int, int, int]] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._reserved_until = 0.0  # monotonic time until which first words keep the gate
        self.grants: deque[Grant] = deque(maxlen=history)

    @contextmanager
    def slice(self, ticket: Ticket | None, kind: str) -> Iterator[None]:
        """Hold the gate for one slice of ``kind`` work on behalf of ``ticket``."""
        priority = Priority.BACKGROUND if ticket is None else ticket.priority(kind)
        order = -1 if ticket is None else ticket.order
        entry = (int(priority), order, next(self._sequence))
        urgent = priority is Priority.FIRST_WORDS
        with self._condition:
            heapq.heappush(self._waiting, entry)
            while True:
                if self._busy < self._capacity and self._waiting[0] == entry:
                    reserved = 0.0 if urgent else self._reserved_until - time.monotonic()
                    if reserved <= 0:
                        break
                    self._condition.wait(reserved)
                else:
                    self._condition.wait()
            heapq.heappop(self._waiting)
            self._busy += 1
            self.grants.append(Grant(ticket.key if ticket else "", kind, priority))
        try:
            yield
        finally:
            with self._condition:
                self._busy -= 1
                if urgent:
                    self._reserved_until = time.monotonic() + FIRST_WORDS_GRACE_S
                self._condition.notify_all()


CPU = ComputeScheduler()
"""The scheduler of this process's embedded models: one machine, one set of cores."""
