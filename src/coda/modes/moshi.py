"""``moshi_only``: Moshi hears the user's speech and answers in its own voice."""

from __future__ import annotations

from collections.abc import AsyncIterator

from coda.audio.decode import resample
from coda.core.errors import ValidationError
from coda.core.models import VoiceProcessingMode
from coda.modes.clock import TurnClock
from coda.modes.responder import TurnRequest
from coda.providers.base import SpeechAudio, SpeechToSpeech
from coda.turn.events import SpokenPiece, TextDelta, TurnEvent, TurnFinished

SPEECH_NEEDED = "Moshi answers speech, and this turn has no audio"


class MoshiResponder:
    """Streams Moshi's reply as events: text pieces, and audio frames as they arrive.

    Args:
        s2s: The speech-to-speech provider.
        output_rate: Sample rate of the audio it emits, in Hz.
    """

    mode = VoiceProcessingMode.MOSHI_ONLY

    def __init__(self, s2s: SpeechToSpeech, output_rate: int) -> None:
        self.s2s = s2s
        self.name = s2s.name
        self.output_rate = output_rate

    async def respond(self, request: TurnRequest, clock: TurnClock) -> AsyncIterator[TurnEvent]:
        """Stream the reply.

        Raises:
            ValidationError: If the turn has no audio.
            MoshiConnectionError: If Moshi cannot be reached or fails mid-reply.
        """
        if request.audio is None or not request.audio.size:
            raise ValidationError(SPEECH_NEEDED)
        started = clock.since()
        text: list[str] = []
        unspoken: list[str] = []
        async for item in self.s2s.respond(request.audio, request.audio_rate):
            if isinstance(item, str):
                text.append(item)
                unspoken.append(item)
                yield TextDelta(item)
                continue
            if "moshi_first_audio" not in clock.marks:
                clock.marks["moshi_first_audio"] = clock.stop(started)
                clock.mark("first_audio")
            samples = resample(item.samples, item.sample_rate, self.output_rate)
            yield SpokenPiece("".join(unspoken), SpeechAudio(samples, self.output_rate))
            unspoken.clear()
        clock.marks["moshi_total"] = clock.stop(started)
        yield TurnFinished(
            "".join(text).strip(),
            getattr(self.s2s, "finish_reason", None),
            dict(clock.marks),
            {"engine": {"provider": self.name}},
        )
