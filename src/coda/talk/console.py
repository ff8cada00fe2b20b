"""The live console: the sound card in front of a ``DuplexSession``.

PortAudio's threads only move samples: captured blocks go into a bounded queue
that the event loop drains into the session, and the output callback takes
reply audio from the ``Player`` and tells the session what played (the echo
canceller's reference). Everything else runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, TextIO

import numpy as np

from coda.audio.frames import FRONT_END_RATE
from coda.core.enums import VoiceProcessingMode
from coda.streaming.duplex import DuplexSession
from coda.talk.devices import DeviceChoice, open_streams
from coda.talk.gate import PushToTalk, keys_to
from coda.talk.player import Player
from coda.turn.events import (
    Interrupted,
    MemoryRecalled,
    SpeechEnded,
    SpokenPiece,
    TextDelta,
    ToolCalled,
    Transcribed,
    TurnEvent,
    TurnFailed,
    TurnOutcome,
)
from coda.voice.manager import VoiceManager

TALK_ECHO_GATE_DB = 18.0
"""Residual echo gate on a sound card: its speakers reach the microphone far louder
than a browser's (which cancels its own echo first), so while Coda plays, audio
less than 18 dB below the reply after cancellation is taken as echo; a person
talking over Coda is louder than that."""
MAX_QUEUED_BLOCKS = 50
"""Captured blocks waiting for the session (1 s): older audio is useless live, so
a stalled loop drops blocks rather than grow memory."""


@dataclass(frozen=True)
class TalkOptions:
    """How ``coda talk`` runs.

    Attributes:
        conversation_id: The conversation to continue or start.
        mode: Processing mode (None: the config's default).
        speaker: Whose memories and personality apply.
        devices: Which sound devices to open.
        push_to_talk: Count the microphone only while the talk key is held.
    """

    conversation_id: str
    mode: VoiceProcessingMode | None
    speaker: str
    devices: DeviceChoice
    push_to_talk: bool = False


def tool_said(success: bool, result: Any, error: str | None) -> str:
    """What a tool call came to, for people: its result's ``result`` or ``text``."""
    if not success:
        return f"failed: {error}"
    if isinstance(result, dict):
        result = result.get("result", result.get("text", result))
    return str(result)


class Transcript:
    """Prints a conversation's events as they come: words, reply, memories, tools."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._replying = False
        self._endpointing: float | None = None  # of the last utterance, in ms

    def _latency(self, outcome: TurnOutcome) -> str:
        """When the reply started playing, from the end of speech (as the page's waterfall)."""
        timings = outcome.metadata.get("timings_ms", {})
        first = timings.get("first_audio")
        if first is None or self._endpointing is None:
            return ""
        started = timings.get("started_after_speech_ms", self._endpointing)
        return f", reply {max(self._endpointing, started + first):.0f} ms after you stopped"

    def _line(self, text: str) -> None:
        if self._replying:  # a reply is mid-line: end it first
            self._out.write("\n")
            self._replying = False
        self._out.write(text + "\n")
        self._out.flush()

    def show(self, event: TurnEvent) -> None:
        """Print one event (the ones a person cares about)."""
        if isinstance(event, Transcribed):
            self._line(f"you:  {event.text}")
        elif isinstance(event, MemoryRecalled):
            for memory in event.memories:
                self._line(f"  remembered: {memory.get('text', '')}")
        elif isinstance(event, ToolCalled):
            said = tool_said(event.success, event.result, event.error)
            self._line(f"  tool: {event.name} → {said}")
        elif isinstance(event, TextDelta):
            if not self._replying:
                self._out.write("coda: ")
                self._replying = True
            self._out.write(event.text)
            self._out.flush()
        elif isinstance(event, Interrupted):
            self._line("  [interrupted]")
        elif isinstance(event, SpeechEnded):
            self._endpointing = event.endpointing_ms
        elif isinstance(event, TurnOutcome):
            self._line(f"  [{event.mode.value}{self._latency(event)}]")
        elif isinstance(event, TurnFailed):
            self._line(f"  error: {event.message}")


async def talk(manager: VoiceManager, options: TalkOptions, out: TextIO) -> None:
    """Hold a conversation on the sound card until Ctrl-C (SIGINT) or SIGTERM.

    Raises:
        AudioDeviceError: If the microphone or speakers cannot be opened.
    """
    if await manager.get_conversation_state(options.conversation_id) is None:
        await manager.start_conversation(options.conversation_id)
    loop = asyncio.get_running_loop()
    blocks: asyncio.Queue[np.ndarray] = asyncio.Queue(MAX_QUEUED_BLOCKS)
    output_rate = manager.config.audio.sample_rate
    played: deque[np.ndarray] = deque()

    def captured(block: np.ndarray) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            blocks.put_nowait(block)

    heard_at = 0.0  # loop time the last reported block is heard

    def heard_later(samples: np.ndarray, delay: float) -> None:
        # The echo canceller's reference must not run ahead of the echo by more than
        # its tail: played audio counts from when it is heard, in order.
        nonlocal heard_at
        heard_at = max(heard_at, loop.time() + delay)
        loop.call_at(heard_at, played.append, samples)

    player = Player(lambda samples, delay: loop.call_soon_threadsafe(heard_later, samples, delay))
    source, sink = open_streams(
        options.devices,
        FRONT_END_RATE,  # asked of the microphone first: what recognition works at
        output_rate,
        lambda block: loop.call_soon_threadsafe(captured, block),
        player.fill,
    )
    try:
        session = DuplexSession(
            manager.engine,
            options.conversation_id,
            int(source.samplerate),
            options.mode,
            speaker=options.speaker,
            audio=replace(manager.config.audio, echo_gate_db=TALK_ECHO_GATE_DB),
        )
    except BaseException:
        source.close()
        sink.close()
        raise
    gate = PushToTalk() if options.push_to_talk else None
    transcript = Transcript(out)

    async def listen() -> None:
        while True:
            block = await blocks.get()
            if gate is not None and not gate.open:
                block = np.zeros_like(block)  # the room does not count; time goes on
            while played:  # what the speakers played up to now: the echo reference
                session.played(played.popleft())
            await session.feed(block)

    async def answer() -> None:
        while True:
            event = await session.events.get()
            transcript.show(event)
            if isinstance(event, SpokenPiece):
                player.push(event.audio.samples)
            elif isinstance(event, Interrupted):
                player.clear()

    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    hint = "hold space (or press Enter) to talk" if gate else "speak; Ctrl-C ends"
    out.write(f"listening on {options.conversation_id!r}: {hint}\n")
    out.flush()
    tasks = [asyncio.create_task(work) for work in (listen(), answer(), stop.wait())]
    try:
        with keys_to(gate) if gate is not None else contextlib.nullcontext():
            source.start()
            sink.start()
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failure in the loop ends the conversation with its error
    finally:
        for stream in (source, sink):
            stream.stop()
            stream.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()  # a turn cut short by the end is stored with what was heard
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    out.write("bye\n")
    out.flush()
