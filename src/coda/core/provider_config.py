"""Settings of the model providers: speech to text, language model, text to speech, Moshi."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MoshiConfig:
    """Moshi speech-to-speech server settings.

    Attributes:
        server_url: Websocket URL of a Moshi server's chat endpoint, e.g.
            ``ws://127.0.0.1:8998/api/chat``; None means no Moshi server.
        enabled: Whether Coda may use Moshi at all.
        device: Where a locally managed Moshi runs ("cuda" or "cpu").
        vram_budget_gb: GPU memory Moshi may reserve, in GiB.
        connect_timeout_seconds: Time to open the websocket, in seconds.
        handshake_timeout_seconds: Time to wait for the server's handshake, in seconds.
        max_response_seconds: Longest reply collected for one message, in seconds.
        reply_silence_seconds: Silence after Moshi has spoken that ends its reply.
        silence_dbfs: An 80 ms frame quieter than this (RMS, dBFS) is silence.
        receive_timeout_seconds: Longest wait for Moshi's next output.
        flow_window_frames: Frames sent ahead of the replies received (Moshi's
            output is paced by its input, so input is paced by its output).
        reconnect_attempts: Reconnections a live session tries before giving up.
        reconnect_backoff_seconds: First wait between reconnections; doubles each time.
        temperature: Audio-token sampling temperature (servers that read it).
        temperature_text: Text-token sampling temperature (servers that read it).
        top_k: Audio-token top-k (servers that read it).
        top_k_text: Text-token top-k (servers that read it).
        server_urls: More Moshi servers: with ``server_url``, a pool in which each
            server serves one session at a time.
        recheck_seconds: A pool server that failed (refused, or busy with another
            client) is skipped this long, then tried again, in seconds.
        pool_handshake_seconds: With several servers, one that sends no handshake
            within this long is taken as busy and the next is tried, in seconds.
        ping_interval_seconds: Websocket pings to the server this often; one not
            answered within as long again ends the session, in seconds.
    """

    server_url: str | None = None
    enabled: bool = True
    device: str = "cuda"
    vram_budget_gb: float = 24.0
    connect_timeout_seconds: float = 3.0
    handshake_timeout_seconds: float = 5.0
    max_response_seconds: float = 10.0
    reply_silence_seconds: float = 0.8
    silence_dbfs: float = -45.0
    receive_timeout_seconds: float = 5.0
    flow_window_frames: int = 4
    reconnect_attempts: int = 5
    reconnect_backoff_seconds: float = 0.25
    temperature: float = 0.8
    temperature_text: float = 0.7
    top_k: int = 250
    top_k_text: int = 25
    server_urls: tuple[str, ...] = ()
    recheck_seconds: float = 10.0
    pool_handshake_seconds: float = 1.0
    ping_interval_seconds: float = 10.0

    def servers(self) -> list[str]:
        """Every configured server (``server_url`` first), each once; none when disabled."""
        if not self.enabled:
            return []
        urls = ([self.server_url] if self.server_url else []) + list(self.server_urls)
        return list(dict.fromkeys(urls))


@dataclass
class LLMConfig:
    """Language model settings.

    Attributes:
        provider: "llamacpp" (embedded), "ollama", "openai" (any OpenAI-compatible
            server), or "auto" (Ollama when it answers and has ``model``, else llamacpp).
        model: Model name for remote providers; for llamacpp, a GGUF path or None for
            the embedded Qwen2.5-Coder-0.5B-Instruct.
        base_url: Server URL for remote providers (None: the provider's default).
        api_key: API key for OpenAI-compatible servers (None: ``$OPENAI_API_KEY`` or none).
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass.
        max_tokens: Longest reply, in tokens.
        timeout_seconds: Longest wait for a remote reply, in seconds.
        context_tokens: Context window of the embedded model, in tokens.
        threads: CPU threads for the embedded model (0: all cores).
        parallel_slots: Conversations the embedded model serves at once, each in a
            llama.cpp context of its own (~0.6 GB each: the repacked weights and
            the cache; the first loads at start, the others just after, in the
            background); turns beyond it wait for a free one.
        system_prompt: Instructions that open every conversation.
        probe_timeout_seconds: How long "auto" waits for Ollama to answer, in seconds.
        seed: Sampling seed for reproducible replies (None: a fresh one each turn).
    """

    provider: str = "ollama"
    model: str | None = "gemma3:1b"
    base_url: str | None = None
    api_key: str | None = None
    temperature: float = 0.3
    top_p: float = 0.9
    max_tokens: int = 200
    timeout_seconds: float = 30.0
    context_tokens: int = 4096
    threads: int = 0
    parallel_slots: int = 4
    system_prompt: str = (
        "You are Coda, a friendly voice assistant. Your replies are spoken aloud, so answer "
        "in one or two short sentences of plain conversational English, with no lists, "
        "markdown, code or emoji. Use what the user told you earlier in the conversation."
    )
    probe_timeout_seconds: float = 0.5
    seed: int | None = None


@dataclass
class STTConfig:
    """Speech-to-text settings.

    Attributes:
        provider: Registry name of the speech-to-text provider.
        model: Embedded Whisper to use: "tiny.en" (default, fastest) or "base"
            (multilingual, about 2x slower, more accurate; the ``whisper-base`` extra).
        model_path: A CTranslate2 Whisper folder, overriding ``model``.
        compute_type: CTranslate2 compute type ("int8" is fastest on CPU).
        threads: CPU threads (0: all cores).
        beam_size: Beam width. 5 heard a second voice (espeak-ng) far better than
            greedy decoding (WER 14.5 % against 20.8 % on the eval's 64 sentences;
            spoken recall in ``coda eval`` 83 % against 77 %) for about 30 ms more
            per utterance, which the speculative recognition during endpointing
            hides (``coda bench latency`` first audio p50 895 against 918 ms).
        language: Spoken language code.
        fitted_window: Encode only the utterance (at least ``min_window_seconds``)
            instead of Whisper's fixed 30 s window. A result that loops or is too
            long for its audio falls back to the full window. Only with
            ``VoiceConfig.enable_optimization``. Measured on 30 spoken questions:
            median 70 ms against 290 ms, WER 4.0 % against 4.5 %, no fallback.
        min_window_seconds: Shortest fitted window, in seconds (6 s was faster, 44 ms,
            but fell back on 6 of 30 questions).
    """

    provider: str = "faster_whisper"
    model: str = "tiny.en"
    model_path: str | None = None
    compute_type: str = "int8"
    threads: int = 0
    beam_size: int = 5
    language: str = "en"
    fitted_window: bool = True
    min_window_seconds: float = 10.0


@dataclass
class TTSConfig:
    """Text-to-speech settings.

    Attributes:
        provider: Registry name of the text-to-speech provider.
        voice_path: Piper ONNX voice (None: the embedded en_US joe voice).
        speaking_rate: Speed multiplier (> 1 is faster). 0.92 measured clearer than
            1.0 with the joe voice: round-trip WER 5-8 % against 8-10 %.
        volume: Peak level of each synthesized sentence (full scale = 1.0).
        noise_scale: Prosody variation (None: the voice's own; 0: the same audio every time).
        noise_w_scale: Phoneme-length variation (None: the voice's own).
    """

    provider: str = "piper"
    voice_path: str | None = None
    speaking_rate: float = 0.92
    volume: float = 0.9
    noise_scale: float | None = None
    noise_w_scale: float | None = None
