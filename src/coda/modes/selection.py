"""Which responder answers a turn, and why."""

from __future__ import annotations

from dataclasses import dataclass

from coda.core.models import VoiceProcessingMode

MOSHI_MISSING = "the Moshi speech-to-speech client is not implemented yet (issue #5)"
HYBRID_MISSING = "hybrid mode (two responders racing) is not implemented yet (issue #4)"


@dataclass(frozen=True)
class ModeDecision:
    """The mode asked for, the responder that answers, and the reason."""

    requested: VoiceProcessingMode
    chosen: VoiceProcessingMode
    reason: str

    def as_dict(self) -> dict[str, str]:
        """For response metadata."""
        return {
            "requested": self.requested.value,
            "chosen": self.chosen.value,
            "reason": self.reason,
        }


def requested_mode(
    argument: VoiceProcessingMode | str | None,
    message_mode: VoiceProcessingMode | str | None,
    default: VoiceProcessingMode,
) -> VoiceProcessingMode:
    """The call's ``mode`` argument wins, then the message's preference, then the config's."""
    for candidate in (argument, message_mode):
        if candidate is not None:
            return VoiceProcessingMode(candidate)
    return default


def decide(
    requested: VoiceProcessingMode, unavailable: dict[VoiceProcessingMode, str]
) -> ModeDecision:
    """Pick the responder for ``requested`` given which ones are unavailable (and why).

    Raises:
        NotImplementedError: For an explicit mode whose responder does not exist yet.
    """
    if requested is VoiceProcessingMode.HYBRID:
        raise NotImplementedError(HYBRID_MISSING)
    if requested is VoiceProcessingMode.MOSHI_ONLY:
        raise NotImplementedError(unavailable.get(requested, MOSHI_MISSING))
    if requested is VoiceProcessingMode.LLM_ENHANCED:
        return ModeDecision(requested, requested, "requested explicitly")
    moshi_reason = unavailable.get(VoiceProcessingMode.MOSHI_ONLY, MOSHI_MISSING)
    return ModeDecision(
        requested,
        VoiceProcessingMode.LLM_ENHANCED,
        f"the cascade is the only available responder: {moshi_reason}",
    )
