"""What a pause in the user's speech tells: the words so far, the voice, the verdict.

At the tentative end of speech the utterance so far is recognized (and, with
Smart Turn, scored from the voice) while the session waits to be sure the turn
is over; the turn-taking policy turns both into a ``Guess`` with the silence
that ends the turn. A guess holds only while nothing more is said.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from coda.audio.endpointing import Endpointer
from coda.audio.smart_turn import SmartTurn
from coda.modes.clock import TurnClock
from coda.streaming.turn_taking import TurnEndPolicy, TurnVerdict
from coda.turn.events import Transcribed
from coda.turn.recognition import Recognizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Guess:
    """What a pause told: the words so far and the turn-taking verdict on them."""

    samples: int  # the utterance's length when it was recognized
    transcript: Transcribed
    verdict: TurnVerdict


OnGuess = Callable[[Guess, np.ndarray, float], None]
"""Called with each guess, the audio it read and where its speech ended (seconds)."""


def _result(task: asyncio.Task[Guess] | None) -> Guess | None:
    if task is None or not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


class PauseReader:
    """Reads one pause at a time; a new pause replaces the last one's reading."""

    def __init__(
        self,
        recognizer: Recognizer,
        policy: TurnEndPolicy,
        smart_turn: SmartTurn | None,
        on_guess: OnGuess,
    ) -> None:
        self._recognizer = recognizer
        self._policy = policy
        self._smart_turn = smart_turn
        self._on_guess = on_guess
        self.task: asyncio.Task[Guess] | None = None

    def read(self, endpointer: Endpointer) -> None:
        """Start reading the pause the endpointer is in."""
        audio = endpointer.current_utterance()
        speech_end = endpointer.position_seconds - endpointer.silence_seconds
        self.cancel()
        self.task = asyncio.create_task(self._read(audio, speech_end))

    async def _read(self, audio: np.ndarray, speech_end: float) -> Guess:
        words = self._recognizer.words(audio, None, TurnClock())
        if self._smart_turn is None:
            transcript, voice = await words, None
        else:  # both at once: the audio model is ready by the time the words are
            transcript, voice = await asyncio.gather(words, self._smart_turn.complete(audio))
        guess = Guess(len(audio), transcript, self._policy.decide(transcript.text, voice))
        log.debug("pause after %r: %s", transcript.text, guess.verdict)
        self._on_guess(guess, audio, speech_end)
        return guess

    def current(self, endpointer: Endpointer) -> Guess | None:
        """The finished guess about the pause now, if nothing was said since."""
        guess = _result(self.task)
        if guess is None or endpointer.silence_seconds <= 0:
            return None
        return guess if endpointer.utterance_samples == guess.samples else None

    def take(self, samples: int) -> asyncio.Task[Guess] | None:
        """The reading of an utterance that ended ``samples`` long (None: it went on after)."""
        task, self.task = self.task, None
        guess = _result(task)
        if task is not None and (guess is None or guess.samples != samples):
            task.cancel()  # speech resumed after the pause (or recognition failed)
            return None
        return task

    def cancel(self) -> None:
        """Stop the reading in progress."""
        if self.task is not None:
            self.task.cancel()
