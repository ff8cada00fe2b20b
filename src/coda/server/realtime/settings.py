"""A Realtime session's settings: what ``session.update`` may set, as Coda applies it.

Both the GA shape (``session.audio.input.turn_detection`` …) and the beta shape
(``turn_detection``, ``input_audio_format``, ``modalities`` at the top) are read.
Audio is PCM16 at 24 kHz both ways. What Coda cannot honour is refused with an
``invalid_request_error`` naming the parameter, never silently ignored, except
the few settings listed in ``IGNORED`` that do not change what a client hears.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from coda.tools.registry import Tool

RATE = 24000
"""Sample rate of the audio in both directions, in Hz."""
FORMATS = ({"type": "audio/pcm", "rate": RATE}, "pcm16")
"""The audio formats accepted (GA, beta)."""
IGNORED = frozenset(
    {"type", "model", "object", "id", "expires_at", "include", "tracing", "truncation", "prompt",
     "client_secret", "temperature", "input_audio_transcription", "input_audio_noise_reduction"}
)  # fmt: skip
"""Accepted and reported, without effect: Coda always transcribes with its own
Whisper, cleans audio with its own front end, and samples as its LLM is set."""


class RealtimeError(Exception):
    """A client event Coda refuses: sent back as an ``error`` event; the session goes on."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


@dataclass(frozen=True)
class TurnDetection:
    """Server-side voice activity detection (``server_vad``; ``semantic_vad`` too).

    ``threshold`` is the speech probability of Coda's VAD, ``prefix_padding_ms`` the
    audio kept before speech, and ``silence_duration_ms`` the silence that ends a
    turn whose words leave it unclear (a finished sentence ends sooner, an
    unfinished one later: Coda's turn-taking reads the words). Without
    ``create_response`` a turn's words wait for ``response.create``; without
    ``interrupt_response`` speech over a reply does not stop it.
    """

    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True

    def as_json(self) -> dict[str, Any]:
        """As the ``session`` object reports it."""
        return {
            "type": self.type,
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


@dataclass(frozen=True)
class SessionSettings:
    """What the client has set (the defaults are what a new session reports)."""

    instructions: str = ""
    voice: str = "coda"
    output_modalities: tuple[str, ...] = ("audio",)
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"
    max_output_tokens: int | None = None

    def updated(self, session: dict[str, Any], reserved: frozenset[str]) -> SessionSettings:
        """These settings with ``session`` (a ``session.update``'s) applied.

        Args:
            session: The event's ``session`` object (GA or beta shape).
            reserved: Names of Coda's own tools, which a client tool may not take.

        Raises:
            RealtimeError: For a value Coda does not support; nothing is applied then.
        """
        changes: dict[str, Any] = {}
        audio = _object(session.get("audio", {}), "session.audio")
        heard = _object(audio.get("input", {}), "session.audio.input")
        said = _object(audio.get("output", {}), "session.audio.output")
        for where, value in (
            ("session.audio.input.format", heard.get("format")),
            ("session.audio.output.format", said.get("format")),
            ("session.input_audio_format", session.get("input_audio_format")),
            ("session.output_audio_format", session.get("output_audio_format")),
        ):
            if value is not None and value not in FORMATS:
                raise RealtimeError(f"{where}: Coda speaks PCM16 at 24 kHz only", param=where)
        for where, holder in (("session.audio.input", heard), ("session", session)):
            if "turn_detection" in holder:
                changes["turn_detection"] = _turn_detection(
                    holder["turn_detection"], f"{where}.turn_detection"
                )
        voice = said.get("voice", session.get("voice"))
        if voice is not None:
            changes["voice"] = _text(voice, "session.audio.output.voice")
        if said.get("speed", 1.0) != 1.0:
            raise RealtimeError("Coda's pace follows the speaker's personality", param="speed")
        if "instructions" in session:
            changes["instructions"] = _text(session["instructions"], "session.instructions")
        modalities = session.get("output_modalities", session.get("modalities"))
        if modalities is not None:
            changes["output_modalities"] = _modalities(modalities)
        if "tools" in session:
            changes["tools"] = _tools(session["tools"], reserved)
        if "tool_choice" in session:
            if session["tool_choice"] not in ("auto", "none"):
                raise RealtimeError("tool_choice is 'auto' or 'none'", param="session.tool_choice")
            changes["tool_choice"] = session["tool_choice"]
        for key in ("max_output_tokens", "max_response_output_tokens"):
            if key in session:
                changes["max_output_tokens"] = _max_tokens(session[key], f"session.{key}")
        known = {"audio", "voice", "instructions", "output_modalities", "modalities", "tools",
                 "tool_choice", "max_output_tokens", "max_response_output_tokens",
                 "turn_detection", "input_audio_format", "output_audio_format"}  # fmt: skip
        unknown = sorted(set(session) - known - IGNORED)
        if unknown:
            raise RealtimeError(
                f"unknown session parameter {unknown[0]!r}", "unknown_parameter", unknown[0]
            )
        return replace(self, **changes)

    def as_json(self, session_id: str, transcription_model: str) -> dict[str, Any]:
        """The ``session`` object of ``session.created`` and ``session.updated``."""
        audio_format = {"type": "audio/pcm", "rate": RATE}
        detection = self.turn_detection.as_json() if self.turn_detection else None
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": "coda",
            "output_modalities": list(self.output_modalities),
            "instructions": self.instructions,
            "tools": [
                {
                    "type": "function",
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                }
                for t in self.tools
            ],  # fmt: skip
            "tool_choice": self.tool_choice,
            "max_output_tokens": self.max_output_tokens or "inf",
            "audio": {
                "input": {
                    "format": audio_format,
                    "turn_detection": detection,
                    "transcription": {"model": transcription_model},
                    "noise_reduction": None,
                },
                "output": {"format": audio_format, "voice": self.voice, "speed": 1.0},
            },
        }


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RealtimeError(f"{where} must be an object", param=where)
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > 16_000:
        raise RealtimeError(f"{where} must be a string of at most 16000 characters", param=where)
    return value


def _turn_detection(value: Any, where: str) -> TurnDetection | None:
    if value is None:
        return None
    value = _object(value, where)
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise RealtimeError(f"{where}.type is server_vad, semantic_vad or null", param=where)
    flags = {flag: value.get(flag, True) for flag in ("create_response", "interrupt_response")}
    for flag, on in flags.items():
        if not isinstance(on, bool):
            raise RealtimeError(f"{where}.{flag} is true or false", param=f"{where}.{flag}")
    detection = TurnDetection(kind)
    threshold = value.get("threshold", detection.threshold)
    if not isinstance(threshold, int | float) or not 0.05 <= threshold <= 0.95:
        raise RealtimeError(f"{where}.threshold must be within 0.05-0.95", param=where)
    padding = _whole(value, "prefix_padding_ms", detection.prefix_padding_ms, 0, 2000, where)
    silence = _whole(value, "silence_duration_ms", detection.silence_duration_ms, 100, 3000, where)
    return TurnDetection(kind, float(threshold), padding, silence, **flags)


def _whole(value: dict[str, Any], name: str, default: int, low: int, high: int, where: str) -> int:
    number = value.get(name, default)
    if not isinstance(number, int) or isinstance(number, bool) or not low <= number <= high:
        raise RealtimeError(f"{where}.{name} must be an integer {low}-{high}", param=where)
    return number


def _modalities(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not set(value) <= {"audio", "text"}:
        raise RealtimeError("output_modalities is ['audio'] or ['text']", param="output_modalities")
    return ("audio",) if "audio" in value else ("text",)


def _tools(value: Any, reserved: frozenset[str]) -> tuple[Tool, ...]:
    if not isinstance(value, list) or len(value) > 32:
        raise RealtimeError("session.tools must be a list of at most 32", param="session.tools")
    tools = []
    for index, spec in enumerate(value):
        where = f"session.tools[{index}]"
        spec = _object(spec, where)
        if spec.get("type", "function") != "function":
            raise RealtimeError(f"{where}: only function tools are supported", param=where)
        name = spec.get("name")
        if name in reserved:
            raise RealtimeError(f"{where}: {name!r} is one of Coda's own tools", param=where)
        try:
            tools.append(
                Tool(
                    str(name),
                    _text(spec.get("description", ""), f"{where}.description"),
                    spec.get("parameters") or {"type": "object", "properties": {}},
                    run=_run_by_the_client,
                )
            )
        except ValueError as bad:
            raise RealtimeError(f"{where}: {bad}", param=where) from None
    if len({t.name for t in tools}) != len(tools):
        raise RealtimeError("session.tools: two tools share a name", param="session.tools")
    return tuple(tools)


def _max_tokens(value: Any, where: str) -> int | None:
    if value == "inf" or value is None:
        return None
    if not isinstance(value, int) or not 1 <= value <= 4096:
        raise RealtimeError(f"{where} is 'inf' or an integer 1-4096", param=where)
    return value


def _run_by_the_client(**_: Any) -> None:
    """A client's tool runs on the client: the server never calls it."""
    raise RuntimeError("a client tool runs on the client")
