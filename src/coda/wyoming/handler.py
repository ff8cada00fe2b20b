"""Coda as a Wyoming server: speech to text, text to speech and the conversation itself.

Home Assistant's Assist (and any ``wyoming`` client) talks to it over TCP:

- ``describe`` → ``info``: one ASR program (Whisper), one TTS program (Piper's
  voice) and one handle program (the assistant, with memory and tools);
- ``transcribe`` then ``audio-start``/``audio-chunk``/``audio-stop`` → ``transcript``,
  the audio cleaned and recognized as in every other turn;
- ``synthesize`` → ``audio-start``/``audio-chunk``/``audio-stop`` (16-bit mono);
- ``transcript`` (the user's words, as Home Assistant sends them to a handle
  program) → ``handled`` with Coda's reply, through the turn pipeline: memory,
  personality and tools take part. ``context.conversation_id`` continues a
  conversation; without one, each connection is a conversation of its own.

Anything else gets an ``error`` event, and the connection goes on. The audio
of one utterance is bounded by ``AudioConfig.max_audio_length_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled
from wyoming.info import Describe
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize

from coda.audio.frames import pcm16
from coda.core.errors import ValidationError, VoiceProcessingError
from coda.core.ids import is_conversation_id
from coda.core.models import VoiceMessage, new_id
from coda.modes.clock import TurnClock
from coda.voice.manager import VoiceManager
from coda.wyoming.info import describe

log = logging.getLogger(__name__)

CHUNK_SAMPLES = 1024
"""Samples per ``audio-chunk`` of synthesized speech."""


class CodaEventHandler(AsyncEventHandler):
    """One Wyoming connection.

    Args:
        voice: The initialized voice manager.
        speaker: Whose memories and personality the conversation turns use.
        reader: The connection's reader (from the server).
        writer: The connection's writer.
    """

    def __init__(
        self,
        voice: VoiceManager,
        speaker: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(reader, writer)
        self.voice = voice
        self.speaker = speaker
        self.conversation_id = new_id("wyoming")
        self._audio: bytearray | None = None
        self._format: AudioStart | None = None
        self._too_long = False  # the utterance outgrew the limit: the rest is dropped
        self._language: str | None = None

    async def handle_event(self, event: Event) -> bool:
        """Answer one event; a bad or unknown one gets an ``error`` and the link stays."""
        try:
            await self._handle(event)
        except VoiceProcessingError as error:
            await self.write_event(Error(text=str(error), code=type(error).__name__).event())
        return True

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(describe(self.voice.engine).event())
        elif Transcribe.is_type(event.type):
            self._language = Transcribe.from_event(event).language
            self._audio, self._format = bytearray(), None
        elif AudioStart.is_type(event.type):
            self._format = AudioStart.from_event(event)
            self._audio, self._too_long = bytearray(), False
        elif AudioChunk.is_type(event.type):
            self._take_chunk(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type):
            await self._transcribe()
        elif Synthesize.is_type(event.type):
            await self._synthesize(Synthesize.from_event(event).text)
        elif Transcript.is_type(event.type):
            await self._converse(Transcript.from_event(event))
        else:
            await self.write_event(
                Error(
                    text=f"Coda does not handle {event.type!r} events", code="unsupported"
                ).event()
            )

    def _take_chunk(self, chunk: AudioChunk) -> None:
        if self._audio is None or self._format is None:
            raise ValidationError("audio-chunk before transcribe and audio-start")
        if (chunk.rate, chunk.width, chunk.channels) != (
            self._format.rate, self._format.width, self._format.channels
        ):  # fmt: skip
            raise ValidationError("audio-chunk in another format than its audio-start")
        limit = self.voice.config.audio.max_audio_length_seconds
        if len(self._audio) + len(chunk.audio) > limit * chunk.rate * chunk.width * chunk.channels:
            self._too_long = True
        if not self._too_long:
            self._audio.extend(chunk.audio)

    async def _transcribe(self) -> None:
        audio, audio_format = self._audio, self._format
        self._audio = self._format = None
        if audio is None or audio_format is None:
            raise ValidationError("audio-stop before transcribe and audio-start")
        if self._too_long:
            limit = self.voice.config.audio.max_audio_length_seconds
            raise ValidationError(f"an utterance is at most {limit:g} s")
        if audio_format.width != 2:
            raise ValidationError("send 16-bit audio (width 2)")
        pipeline = self.voice.engine.require_ready()
        message = VoiceMessage(
            self.conversation_id,
            bytes(audio),
            format="pcm_s16le",
            sample_rate=audio_format.rate,
            channels=audio_format.channels,
        )
        clock = TurnClock()
        speech = await pipeline.intake.take(message, pipeline.recognizer.sample_rate, clock)
        words = await pipeline.recognizer.words(speech, None, clock)
        await self.write_event(Transcript(text=words.text, language=self._language).event())

    async def _synthesize(self, text: str) -> None:
        if not text.strip():
            raise ValidationError("nothing to synthesize")
        tts = self.voice.engine.tts
        if tts is None:
            raise ValidationError("the voice is not loaded")
        speech = await tts.synthesize(text)
        pcm = pcm16(speech.samples)
        rate, step = speech.sample_rate, CHUNK_SAMPLES * 2
        await self.write_event(AudioStart(rate=rate, width=2, channels=1).event())
        for start in range(0, len(pcm), step):
            chunk = AudioChunk(rate=rate, width=2, channels=1, audio=pcm[start : start + step])
            await self.write_event(chunk.event())
        await self.write_event(AudioStop().event())

    async def _converse(self, said: Transcript) -> None:
        context: dict[str, Any] = dict(said.context or {})
        named = context.get("conversation_id")
        if is_conversation_id(named):
            self.conversation_id = named
        message = VoiceMessage(
            self.conversation_id, b"", text_content=said.text, speaker=self.speaker
        )
        response = await self.voice.process_voice_message(message)
        context["conversation_id"] = self.conversation_id
        await self.write_event(Handled(text=response.text_content, context=context).event())
