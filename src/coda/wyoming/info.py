"""What ``coda wyoming`` serves, as Wyoming's ``info`` event describes it."""

from __future__ import annotations

from pathlib import Path

from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    HandleModel,
    HandleProgram,
    Info,
    TtsProgram,
    TtsVoice,
)

from coda.voice.engine import VoiceEngine

CODA = Attribution(name="Coda Voice", url="")
EMBEDDED_VOICE = "en_US-joe-medium"
LANGUAGES = ["en"]


def describe(engine: VoiceEngine) -> Info:
    """The recognizer, the voice and the assistant this engine runs."""
    stt = engine.config.stt
    path = engine.config.tts.voice_path
    voice = Path(path).stem if path else EMBEDDED_VOICE
    version = "0.1.0"
    return Info(
        asr=[
            AsrProgram(
                name="coda-stt",
                attribution=CODA,
                installed=True,
                description="Coda's speech recognition (faster-whisper), cleaned as in a turn",
                version=version,
                models=[
                    AsrModel(
                        name=f"whisper-{stt.model}",
                        attribution=Attribution(
                            name="OpenAI", url="https://github.com/openai/whisper"
                        ),
                        installed=True,
                        description=f"Whisper {stt.model}",
                        version=None,
                        languages=LANGUAGES,
                    )
                ],
            )
        ],
        tts=[
            TtsProgram(
                name="coda-tts",
                attribution=CODA,
                installed=True,
                description="Coda's voice (Piper)",
                version=version,
                voices=[
                    TtsVoice(
                        name=voice,
                        attribution=Attribution(
                            name="Piper", url="https://github.com/rhasspy/piper"
                        ),
                        installed=True,
                        description=f"Piper {voice}",
                        version=None,
                        languages=LANGUAGES,
                    )
                ],
            )
        ],
        handle=[
            HandleProgram(
                name="coda",
                attribution=CODA,
                installed=True,
                description="Coda, the assistant: memory, personality and tools",
                version=version,
                models=[
                    HandleModel(
                        name="coda",
                        attribution=CODA,
                        installed=True,
                        description="Coda's turn pipeline",
                        version=version,
                        languages=LANGUAGES,
                    )
                ],
            )
        ],
    )
