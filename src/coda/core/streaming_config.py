"""Streaming and turn-taking settings: how fast Coda speaks up, and when it waits."""

from __future__ import annotations

from dataclasses import dataclass

from coda.core.errors import ConfigurationError


@dataclass
class StreamingConfig:
    """Streaming, turn-taking and latency settings.

    Attributes:
        first_clause_min_words: The first piece of a reply is spoken as soon as a
            clause of at least this many words is complete (a comma is enough), so
            the first audio does not wait for a whole sentence.
        first_piece_max_words: A first sentence longer than this many words with no
            clause boundary is cut at a phrase boundary (before "is", "at", "with",
            ...), so synthesis can start; 0 disables.
        max_sentence_chars: Longer sentences are cut at a clause boundary.
        turn_timeout_seconds: Longest a turn may take before ``TimeoutError``.
        barge_in_min_speech_ms: Speech during a reply must last this long (ms)
            before it is taken as an interruption; shorter sounds (a cough, a
            150 ms noise burst) never stop Coda.
        backchannels: Words that, said alone during a reply, do not interrupt it.
        self_echo_overlap: Speech during a reply whose words are at least this share
            of the reply's own words is taken as Coda's echo (the canceller still
            converging), not an interruption; 0 disables the check.
        tentative_end_ms: Silence (ms) after which recognition starts speculatively,
            before the end of the turn is confirmed, and (with
            ``preemptive_reply``) the reply is prepared. 80 ms measured first
            audio p50 689 ms against 820 ms at 120 ms (``coda bench latency``),
            with no more false cuts on the recordings.
        preemptive_reply: Start the reply (the LLM on the speculative words and
            the synthesis of its first clause) at the tentative end; it is
            released when the end is confirmed and discarded if the user goes on.
        end_silence_complete_ms: Silence (ms, from the end of speech) that ends a
            turn whose words are surely complete ("What time is it?").
        end_silence_unsure_ms: Silence (ms) that ends a turn whose shape is unclear
            (no closing punctuation, or the voice disagrees with the words).
        end_silence_unfinished_ms: Silence (ms) that ends a turn left in an
            unfinished shape (counting, a list, "and", "um", a preposition); also
            the longest any turn waits.
        smart_turn: Let the audio's own end-of-turn model (Smart Turn v3.2, from
            the ``pipecat-ai`` wheel) weigh in; off, or when that wheel is not
            installed, the words alone decide. Off by default: on the real
            recordings of ``coda bench latency`` it cut no fewer pauses than the
            words alone, cost ~60-120 ms of CPU per pause, and held finished
            turns longer (it scored "Hello world!" 0.01 on telephone audio).
        smart_turn_threshold: Smart Turn's probability of "complete" at or above
            which it promotes an unpunctuated turn; at or below one minus it, it
            demotes a complete-looking one to unsure.
        unfinished_words: Last words that mark a sentence as unfinished (a question
            mark still ends it).
    """

    first_clause_min_words: int = 2
    first_piece_max_words: int = 4
    max_sentence_chars: int = 160
    turn_timeout_seconds: float = 30.0
    barge_in_min_speech_ms: int = 300
    backchannels: tuple[str, ...] = (
        "mm", "mhm", "mm-hm", "mm hmm", "uh-huh", "uh huh", "hmm", "yeah", "yep", "yes",
        "ok", "okay", "right", "sure", "i see", "got it", "aha",
    )  # fmt: skip
    self_echo_overlap: float = 0.8
    tentative_end_ms: int = 80
    preemptive_reply: bool = True
    end_silence_complete_ms: int = 120
    end_silence_unsure_ms: int = 500
    end_silence_unfinished_ms: int = 1200
    smart_turn: bool = False
    smart_turn_threshold: float = 0.8
    unfinished_words: tuple[str, ...] = (
        "and", "or", "but", "so", "because", "the", "a", "an", "to", "of", "with", "for",
        "in", "on", "at", "my", "your", "um", "uh", "er", "like", "if", "that", "is",
        "are", "was", "were", "am", "have", "has", "had", "about", "from", "into", "than",
        "by", "as", "our", "their", "which", "whose", "when", "where", "then",
    )  # fmt: skip

    def validate(self) -> None:
        """Validate the turn-taking settings.

        Raises:
            ConfigurationError: If the silences are out of order or a share is not in [0, 1].
        """
        silences = (
            self.tentative_end_ms,
            self.end_silence_complete_ms,
            self.end_silence_unsure_ms,
            self.end_silence_unfinished_ms,
        )
        if not 0 < silences[0] <= silences[1] <= silences[2] <= silences[3]:
            raise ConfigurationError(
                "need 0 < tentative_end_ms <= end_silence_complete_ms <= "
                f"end_silence_unsure_ms <= end_silence_unfinished_ms, got {silences}"
            )
        if not 0.5 <= self.smart_turn_threshold <= 1.0:
            raise ConfigurationError("smart_turn_threshold must be within [0.5, 1]")
