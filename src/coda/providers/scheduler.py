"""One scheduler in front of the embedded models: the turn that has not spoken goes first.

The embedded LLM and TTS share this machine's cores. Their work is cut into
slices (one token of the LLM, one clause of speech) and every slice waits for
the scheduler, which grants the next one to, in order:

1. a turn that has not spoken yet: its LLM until the first clause is written,
   then the synthesis of that clause;
2. the continuation of a turn already speaking;
3. work for no turn (background learning, summaries, warm-up), unless a turn
   is waiting for it (the speaker's previous turn is still being learned).

Within a level the older turn goes first. A turn reaches for its next slice a
moment after releasing the last (sampling, handing a clause to synthesis), so
the gate is held for it: a continuation waits while another turn worked on its
first words in the last ``FIRST_WORDS_HOLD_S``, and background work waits while
any turn worked in the last ``TURN_HOLD_S``. So no conversation's first words
wait behind another's long reply, nor any reply behind background learning. A
turn's claim (``Ticket``) travels with it in a context variable, set by the
turn pipeline (and by background jobs), so providers need no extra arguments.
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
FIRST_WORDS_HOLD_S = 0.05
"""A turn writing its first words keeps the gate from continuations this long (s)."""
TURN_HOLD_S = 0.5
"""A turn in progress keeps the gate from background work this long after a slice (s)."""


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
        done: The turn needs no more slices.
        background: Work after a turn (learning) rather than a turn.
        awaited: A turn is waiting for this background work: it is urgent now.
        optional: The rest of this background work is best effort: no turn waits
            for it (a model reading what the rules could not).
    """

    key: str
    order: int = field(default_factory=lambda: next(_orders))
    written: bool = False
    spoken: bool = False
    done: bool = False
    background: bool = False
    awaited: bool = False
    optional: bool = False

    def priority(self, kind: str) -> Priority:
        """The priority of this turn's next ``kind`` ("llm" or "tts") slice."""
        if self.background:
            urgent = self.awaited and not self.optional
            return Priority.FIRST_WORDS if urgent else Priority.BACKGROUND
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
    at: float  # monotonic time of the grant, in seconds


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
        self._recent: dict[int, tuple[Ticket, float]] = {}  # turn → its last slice's end
        self._last_turn = 0.0  # monotonic end of the latest slice of any turn
        self.grants: deque[Grant] = deque(maxlen=history)

    def _held_for_others(self, ticket: Ticket | None, priority: Priority) -> float:
        """How long the gate is still kept from this waiter for other turns (s; 0: not)."""
        if priority is Priority.FIRST_WORDS:
            return 0.0
        now = time.monotonic()
        hold = 0.0
        for order, (other, last) in list(self._recent.items()):
            if other.done or now - last > TURN_HOLD_S:
                del self._recent[order]
            elif other is not ticket:
                if priority is Priority.BACKGROUND:
                    hold = max(hold, last + TURN_HOLD_S - now)
                elif not other.spoken:
                    hold = max(hold, last + FIRST_WORDS_HOLD_S - now)
        return max(0.0, hold)

    def idle_for(self, seconds: float) -> bool:
        """No turn has had a slice for ``seconds`` (a good moment for housekeeping)."""
        return time.monotonic() - self._last_turn >= seconds

    @contextmanager
    def slice(self, ticket: Ticket | None, kind: str) -> Iterator[None]:
        """Hold the gate for one slice of ``kind`` work on behalf of ``ticket``."""
        priority = Priority.BACKGROUND if ticket is None else ticket.priority(kind)
        order = -1 if ticket is None else ticket.order
        entry = (int(priority), order, next(self._sequence))
        with self._condition:
            heapq.heappush(self._waiting, entry)
            while True:
                if self._busy < self._capacity and self._waiting[0] == entry:
                    held = self._held_for_others(ticket, priority)
                    if held <= 0:
                        break
                    self._condition.wait(held)
                else:
                    self._condition.wait()
            heapq.heappop(self._waiting)
            self._busy += 1
            self.grants.append(
                Grant(ticket.key if ticket else "", kind, priority, time.monotonic())
            )
        try:
            yield
        finally:
            with self._condition:
                self._busy -= 1
                if ticket is not None and not ticket.background:
                    self._last_turn = time.monotonic()
                    self._recent[ticket.order] = (ticket, self._last_turn)
                self._condition.notify_all()


CPU = ComputeScheduler()
"""The scheduler of this process's embedded models: one machine, one set of cores."""
