"""``VoicePersonalityIntegration``: traits in the prompt, replies shaped, traits learned."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from typing import Any

import numpy as np
import soundfile as sf

from coda.audio.decode import resample
from coda.audio.encode import encode_wav
from coda.audio.frames import apply_gain
from coda.core.config import default_data_dir
from coda.core.integration_config import VoicePersonalityConfig
from coda.core.models import ConversationState, VoiceMessage, VoiceResponse
from coda.integrations.memory import user_words
from coda.modes.sentences import split_sentences
from coda.personality.store import SQLiteTraitStore, TraitStore
from coda.personality.traits import (
    EXPLICIT_STEPS,
    IMPLICIT_STEPS,
    INTERRUPTION_STEPS,
    Traits,
    explicit_changes,
    signals_in,
)
from coda.providers.base import TextToSpeech
from coda.turn.events import TurnOutcome


class VoicePersonalityIntegration:
    """Integrates voice processing with the personality system.

    Args:
        personality_manager: Where traits persist (default: SQLite in Coda's data folder).
        config: Injection, adaptation and learning settings.
        tts: The voice used to re-speak a reply that adaptation shortened or re-paced.
    """

    def __init__(
        self,
        personality_manager: TraitStore | None = None,
        config: VoicePersonalityConfig | None = None,
        tts: TextToSpeech | None = None,
    ) -> None:
        self.personality_manager = personality_manager or SQLiteTraitStore(
            default_data_dir() / "personality.sqlite3"
        )
        self.config = config or VoicePersonalityConfig()
        self.tts = tts

    @staticmethod
    def scope(message: VoiceMessage) -> str:
        """Whose personality: one per speaker."""
        return f"user:{message.speaker}"

    async def traits(self, message: VoiceMessage) -> Traits:
        """The current traits for the message's speaker."""
        return await self.traits_of(message.speaker)

    async def traits_of(self, speaker: str) -> Traits:
        """The current traits for ``speaker``."""
        return await self.personality_manager.load(f"user:{speaker}")

    def speaking_rate(self, traits: Traits) -> float:
        """``voice_engagement_factor ** (2 × pace − 1)``: faster for a brisk pace."""
        return float(self.config.voice_engagement_factor ** (2 * traits.pace - 1))

    def volume_gain(self, confidence: float | None) -> float:
        """``voice_confidence_factor ** (2 × confidence − 1)``: louder when sure."""
        level = 0.5 if confidence is None else confidence
        return float(self.config.voice_confidence_factor ** (2 * level - 1))

    async def enhance_voice_context(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> dict[str, Any]:
        """The traits, their instructions for the prompt, and the reply's token cap.

        Returns:
            ``{"personality": {...}, "system_context": str | None, "max_tokens": int}``.
        """
        traits = await self.traits(voice_message)
        return {
            "personality": traits.as_dict(),
            "system_context": traits.instructions()
            if self.config.enable_personality_injection
            else None,
            "max_tokens": traits.max_tokens,
        }

    async def adapt_voice_response(
        self,
        voice_response: VoiceResponse,
        voice_message: VoiceMessage,
        conversation_state: ConversationState | None = None,
    ) -> VoiceResponse:
        """Shape a reply to the traits: at most ``max_sentences``, spoken at ``pace``.

        A reply over its sentence budget is cut at a sentence boundary and spoken
        again. The speaking rate is ``voice_engagement_factor ** (2 × pace − 1)``; the
        volume is scaled by ``voice_confidence_factor ** (2 × confidence − 1)``, so a
        confident reply is a little louder and an unsure one a little quieter
        (never clipping).
        """
        if not self.config.enable_response_adaptation:
            return voice_response
        samples, rate = np.zeros(0, np.float32), 0
        if voice_response.audio_data:
            samples, rate = await asyncio.to_thread(
                sf.read, io.BytesIO(voice_response.audio_data), dtype="float32"
            )
        text, samples, adapted = await self.shape(
            await self.traits(voice_message),
            voice_response.text_content,
            samples,
            rate,
            voice_response.confidence_score,
        )
        return dataclasses.replace(
            voice_response,
            text_content=text,
            audio_data=encode_wav(samples, rate) if samples.size else voice_response.audio_data,
            metadata={**voice_response.metadata, "personality": adapted},
        )

    async def adapt_outcome(self, outcome: TurnOutcome) -> TurnOutcome:
        """Shape a turn not yet stored, so the history keeps what is said.

        The reply was already made at the speaker's pace, volume and sentence
        budget (``coda.integrations.hooks``); a reply over the budget (from a
        responder that does not take one) is cut and, unless it was already
        played, spoken again.
        """
        if not self.config.enable_response_adaptation:
            return outcome
        traits = await self.traits_of(outcome.turn.speaker)
        sentences = split_sentences(outcome.reply_text)
        over = len(sentences) - traits.max_sentences
        if over > 0 and not outcome.turn.streamed:
            text, samples, _ = await self.shape(
                traits,
                outcome.reply_text,
                outcome.audio,
                outcome.sample_rate,
                outcome.scores.get("confidence_score"),
            )
            outcome.reply_text, outcome.audio = text, samples
        outcome.metadata["personality"] = {
            "traits": traits.as_dict(),
            "trimmed_sentences": max(0, over) if not outcome.turn.streamed else 0,
            "speaking_rate": round(self.speaking_rate(traits), 3),
            "volume_gain": round(self.volume_gain(outcome.scores.get("confidence_score")), 3),
        }
        return outcome

    async def shape(
        self,
        traits: Traits,
        text: str,
        samples: np.ndarray,
        rate: int,
        confidence: float | None,
    ) -> tuple[str, np.ndarray, dict[str, Any]]:
        """The reply's text and audio (at ``rate``) shaped to ``traits``, and what was done."""
        sentences = split_sentences(text)
        trimmed = len(sentences) > traits.max_sentences
        if trimmed:
            text = " ".join(sentences[: traits.max_sentences])
        pace = self.speaking_rate(traits)
        gain = self.volume_gain(confidence)
        if samples.size and self.tts is not None and (trimmed or abs(pace - 1.0) > 0.01):
            speech = await self.tts.synthesize(text, speaking_rate=pace)
            samples = await asyncio.to_thread(resample, speech.samples, speech.sample_rate, rate)
        if samples.size:
            samples = await asyncio.to_thread(apply_gain, samples, gain)
        adapted = {
            "traits": traits.as_dict(),
            "trimmed_sentences": len(sentences) - traits.max_sentences if trimmed else 0,
            "speaking_rate": round(pace, 3),
            "volume_gain": round(gain, 3),
        }
        return text, samples, adapted

    async def learn_from_voice_interaction(
        self,
        voice_message: VoiceMessage,
        voice_response: VoiceResponse,
        conversation_state: ConversationState | None = None,
        user_feedback: dict[str, Any] | None = None,
    ) -> None:
        """Move traits by explicit feedback, requests in the user's words, and interruptions.

        Steps are multiples of ``adjustment_sensitivity``: explicit feedback 4,
        the user's own words 2, an interruption 1. Traits persist at once.
        """
        await self.learn(
            voice_message.speaker,
            feedback=user_feedback,
            words=user_words(voice_message),
            interrupted=bool(voice_response.metadata.get("interrupted")),
        )

    async def learn(
        self,
        speaker: str,
        *,
        feedback: dict[str, Any] | None = None,
        words: str = "",
        interrupted: bool = False,
    ) -> bool:
        """Move ``speaker``'s traits (see ``learn_from_voice_interaction``); True if moved."""
        if not self.config.enable_personality_learning:
            return False
        step = self.config.adjustment_sensitivity
        changes = [(t, d, EXPLICIT_STEPS) for t, d in explicit_changes(feedback or {})]
        changes += [(t, d, IMPLICIT_STEPS) for t, d in signals_in(words)]
        if interrupted:
            changes.append(("verbosity", -1.0, INTERRUPTION_STEPS))
        if not changes:
            return False
        traits = await self.traits_of(speaker)
        for trait, direction, steps in changes:
            traits.nudge(trait, direction, steps * step)
        await self.personality_manager.save(f"user:{speaker}", traits)
        return True

    async def close(self) -> None:
        """Close the trait store."""
        await self.personality_manager.close()
