"""Which responder answers a turn, and why."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from coda.core.errors import ConfigurationError, ValidationError
from coda.core.models import VoiceProcessingMode
from coda.modes.adaptive import AdaptivePolicy, TurnFeatures

MOSHI_DISABLED = "Moshi is disabled (MoshiConfig.enabled)"
MOSHI_UNCONFIGURED = "no Moshi server is configured (MoshiConfig.server_url)"
KNOWN_REPLY = "the reply is known from memory: the cascade speaks it"
HYBRID_DISABLED = "hybrid processing is switched off (enable_hybrid_processing)"
HYBRID_MISSING = (
    "hybrid needs a second responder: configure Moshi (MoshiConfig.server_url) "
    "or set VoiceConfig.secondary_llm"
)


@dataclass(frozen=True)
class ModeDecision:
    """The mode asked for, the mode that answers, and why."""

    requested: VoiceProcessingMode
    chosen: VoiceProcessingMode
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """For response metadata."""
        return {
            "requested": self.requested.value,
            "chosen": self.chosen.value,
            "reason": self.reason,
            **self.details,
        }

    def fallen_back(
        self, why: str, to: VoiceProcessingMode = VoiceProcessingMode.LLM_ENHANCED
    ) -> ModeDecision:
        """The same turn, now answered by ``to`` because the chosen mode failed."""
        return replace(
            self,
            chosen=to,
            reason=f"fell back to {to.value}: {why}",
            details={**self.details, "fallback": True, "failed": self.chosen.value},
        )


def requested_mode(
    argument: VoiceProcessingMode | str | None,
    message_mode: VoiceProcessingMode | str | None,
    default: VoiceProcessingMode,
) -> VoiceProcessingMode:
    """The call's ``mode`` argument wins, then the message's preference, then the config's.

    Raises:
        ValidationError: If a mode is given that is not a processing mode.
    """
    for candidate in (argument, message_mode):
        if candidate is not None:
            try:
                return VoiceProcessingMode(candidate)
            except ValueError:
                names = ", ".join(m.value for m in VoiceProcessingMode)
                raise ValidationError(f"unknown mode {candidate!r}; use one of {names}") from None
    return default


def decide(
    requested: VoiceProcessingMode,
    available: dict[VoiceProcessingMode, str | None],
    policy: AdaptivePolicy,
    conversation_id: str,
    user_text: str,
    allow_fallback: bool,
    known_reply: bool = False,
) -> ModeDecision:
    """Pick the mode that answers.

    Args:
        requested: The mode asked for.
        available: Every mode, with None if it can answer or the reason it cannot.
        policy: The adaptive policy (for ``ADAPTIVE``).
        conversation_id: Whose measurements the policy uses.
        user_text: The user's words (for the policy's features).
        allow_fallback: Whether an unavailable explicit mode falls back to the cascade.
        known_reply: The reply is already known (from memory): hybrid and adaptive
            have nothing to race or choose, so the cascade speaks it.

    Raises:
        ConfigurationError: For an explicit mode that cannot answer, without fallback.
    """
    if known_reply and requested in (VoiceProcessingMode.HYBRID, VoiceProcessingMode.ADAPTIVE):
        return ModeDecision(requested, VoiceProcessingMode.LLM_ENHANCED, KNOWN_REPLY)
    if requested is VoiceProcessingMode.ADAPTIVE:
        chosen, explanation = policy.choose(conversation_id, TurnFeatures.of(user_text), available)
        return ModeDecision(requested, chosen, explanation.pop("reason"), {"adaptive": explanation})
    why_not = available.get(requested)
    if why_not is None:
        return ModeDecision(requested, requested, "requested explicitly")
    if allow_fallback:
        return ModeDecision(
            requested,
            VoiceProcessingMode.LLM_ENHANCED,
            f"fell back to the cascade: {why_not}",
            {"fallback": True},
        )
    raise ConfigurationError(f"{requested.value} cannot answer: {why_not}")
