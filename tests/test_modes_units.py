"""Mode selection, the adaptive policy, quality scores, prompts and sentence cuts, exactly.

Pure logic with an injected clock: each test pins a boundary or a value that a
changed comparison, constant or formula would move (they also serve ``make mutation``).
"""

from __future__ import annotations

import numpy as np
import pytest

from coda.core.errors import ConfigurationError, ValidationError
from coda.core.models import ConversationTurn
from coda.modes import quality
from coda.modes.adaptive import AdaptivePolicy, BackendStats, TurnFeatures
from coda.modes.clock import TurnClock
from coda.modes.prompt import build_messages
from coda.modes.selection import KNOWN_REPLY, ModeDecision, decide, requested_mode
from coda.modes.sentences import SentenceSplitter, split_sentences
from coda.voice import VoiceProcessingMode

MOSHI = VoiceProcessingMode.MOSHI_ONLY
CASCADE = VoiceProcessingMode.LLM_ENHANCED
HYBRID = VoiceProcessingMode.HYBRID
ADAPTIVE = VoiceProcessingMode.ADAPTIVE
ALL: dict[VoiceProcessingMode, str | None] = {MOSHI: None, CASCADE: None, HYBRID: None}


class ManualClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- turn features ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words", "kind"),
    [
        ("Hi there", 2, "greeting"),
        ("hey how are you", 4, "greeting"),  # at most four words
        ("hey how are you today", 5, "statement"),
        ("Thanks!", 1, "greeting"),
        ("Is it raining?", 3, "question"),
        ("which one", 2, "question"),  # a question word opens it
        ("It is raining ?  ", 3, "question"),  # a question mark ends it
        ("The sky is blue.", 4, "statement"),
        ("   ", 0, "statement"),
    ],
)
def test_turn_features_classify_the_words(text: str, words: int, kind: str) -> None:
    features = TurnFeatures.of(text)
    assert (features.words, features.kind) == (words, kind)


def test_tools_and_memory_make_a_turn_demanding() -> None:
    assert TurnFeatures.of("What is 12 times 7?").needs_tools
    assert TurnFeatures.of("set a timer please").needs_tools
    assert not TurnFeatures.of("Tell me a story").needs_tools
    assert TurnFeatures.of("Do you remember my name").needs_memory
    assert not TurnFeatures.of("Do you like music").needs_memory
    assert TurnFeatures.of("set a timer").demanding
    assert TurnFeatures.of("what did i say").demanding
    # A question is demanding from seven words on; a statement never by length.
    assert TurnFeatures.of("what is the capital city of france").demanding
    assert not TurnFeatures.of("what is the capital of france").demanding
    assert not TurnFeatures.of("i think the sky looks really very blue tonight").demanding


# -- running figures ---------------------------------------------------------------------


def test_backend_stats_are_exponential_averages() -> None:
    stats = BackendStats(failures=3)
    stats.record(100.0, 1.0, smoothing=0.3)
    assert (stats.latency_ms, stats.quality, stats.failures, stats.turns) == (100.0, 1.0, 0, 1)
    stats.record(200.0, 0.5, smoothing=0.3)
    assert stats.latency_ms == pytest.approx(130.0) and stats.quality == pytest.approx(0.85)
    assert stats.turns == 2
    stats.latency_ms, stats.quality = 123.456, 0.123456
    assert stats.as_dict() == {"latency_ms": 123.5, "quality": 0.123, "failures": 0, "turns": 2}
    assert BackendStats().as_dict() == {
        "latency_ms": None,
        "quality": None,
        "failures": 0,
        "turns": 0,
    }


# -- the adaptive policy -------------------------------------------------------------------


def test_small_talk_goes_to_the_fastest_and_questions_to_the_strongest() -> None:
    policy = AdaptivePolicy()
    chosen, why = policy.choose("c", TurnFeatures.of("Hi there"), dict(ALL))
    assert chosen is MOSHI
    assert why["reason"] == "moshi_only: the fastest available mode for a greeting"
    assert why["wanted"] == "fastest" and why["excluded"] == {}
    assert set(why["candidates"]) == {"moshi_only", "llm_enhanced", "hybrid"}
    assert why["features"]["kind"] == "greeting"
    demanding = TurnFeatures.of("What is the boiling point of water at sea level?")
    chosen, why = policy.choose("c", demanding, dict(ALL))
    assert chosen is HYBRID and why["wanted"] == "strongest"
    assert why["reason"] == "hybrid: the strongest available mode for a question"
    # Without hybrid the cascade (0.8 + 0.8) beats Moshi (0.3 + 0.5).
    chosen, why = policy.choose("c", demanding, {**ALL, HYBRID: "switched off"})
    assert chosen is CASCADE and why["excluded"] == {"hybrid": "switched off"}
    assert "hybrid" not in why["candidates"]
    # Without Moshi, small talk goes to the cascade (0.7 + 0.4) before hybrid (0.4 + 0.5).
    assert policy.choose("c", TurnFeatures.of("Hi"), {**ALL, MOSHI: "off"})[0] is CASCADE


def test_measured_latency_and_quality_move_the_choice() -> None:
    small_talk = TurnFeatures.of("Hello")
    two = {MOSHI: None, CASCADE: None}
    slow = AdaptivePolicy()
    # Moshi measured at 900 ms with quality 0.9: 1 - 900/2000 + 0.45 = 1.0 < cascade 1.1.
    slow.record_success("c", MOSHI, 900.0, 0.9)
    assert slow.choose("c", small_talk, two)[0] is CASCADE
    quick = AdaptivePolicy()
    quick.record_success("c", MOSHI, 200.0, 0.9)  # 0.9 + 0.45 = 1.35
    assert quick.choose("c", small_talk, two)[0] is MOSHI
    # A measured quality replaces the prior in a demanding turn: 0.8 + 0.2 < 0.3 + 0.9.
    poor = AdaptivePolicy()
    poor.record_success("c", CASCADE, 300.0, 0.2)
    poor.record_success("c", MOSHI, 300.0, 0.9)
    assert poor.choose("c", TurnFeatures.of("set a timer"), two)[0] is MOSHI
    # Another conversation has learned nothing.
    assert poor.choose("d", TurnFeatures.of("set a timer"), two)[0] is CASCADE


def test_a_mode_slower_than_max_latency_is_chosen_only_if_alone() -> None:
    policy = AdaptivePolicy(max_latency_ms=1000.0)
    policy.record_success("c", MOSHI, 1000.0, 1.0)  # at the limit: still fast enough
    small_talk = TurnFeatures.of("Hello")
    assert policy.choose("c", small_talk, {MOSHI: None, HYBRID: None})[0] is MOSHI
    policy.record_success("c", MOSHI, 5000.0, 1.0)  # 0.7 * 1000 + 0.3 * 5000 = 2200 ms
    assert policy.choose("c", small_talk, {MOSHI: None, HYBRID: None})[0] is HYBRID
    chosen, why = policy.choose("c", small_talk, {MOSHI: None})
    assert chosen is MOSHI
    assert why["reason"].endswith(" (none measured within 1000 ms)")


def test_a_failing_mode_rests_then_is_retried_exactly_on_time() -> None:
    clock = ManualClock()
    policy = AdaptivePolicy(max_failures=2, retry_after_seconds=30.0, now=clock)
    small_talk = TurnFeatures.of("Hello")
    two = {MOSHI: None, CASCADE: None}
    policy.record_failure("c", MOSHI)
    assert policy.stats[("c", MOSHI)].failed_at == 1000.0
    assert policy.choose("c", small_talk, two)[0] is MOSHI  # one failure is not down
    clock.now = 1005.0
    policy.record_failure("c", MOSHI)
    assert policy.stats[("c", MOSHI)].failures == 2
    chosen, why = policy.choose("c", small_talk, two)
    assert chosen is CASCADE and why["excluded"] == {"moshi_only": "failed 2 times in a row"}
    clock.now = 1034.9
    assert policy.choose("c", small_talk, two)[0] is CASCADE
    clock.now = 1035.0  # thirty seconds after the last failure
    assert policy.choose("c", small_talk, two)[0] is MOSHI


def test_when_every_mode_rests_the_one_failed_longest_ago_answers() -> None:
    clock = ManualClock()
    policy = AdaptivePolicy(max_failures=1, retry_after_seconds=60.0, now=clock)
    policy.record_failure("c", CASCADE)
    clock.now = 1010.0
    policy.record_failure("c", MOSHI)
    chosen, why = policy.choose("c", TurnFeatures.of("Hello"), {MOSHI: None, CASCADE: None})
    assert chosen is CASCADE
    assert why["excluded"] == {"moshi_only": "failed 1 times in a row"}
    with pytest.raises(ConfigurationError, match="no responder is available"):
        policy.choose("c", TurnFeatures.of("Hello"), {MOSHI: "down", CASCADE: "down"})


def test_forget_drops_only_that_conversation() -> None:
    policy = AdaptivePolicy()
    policy.record_success("a", CASCADE, 100.0, 0.5)
    policy.record_failure("a", MOSHI)
    policy.record_success("b", CASCADE, 100.0, 0.5)
    policy.forget("a")
    assert list(policy.stats) == [("b", CASCADE)]


# -- selection ---------------------------------------------------------------------------


def test_the_argument_then_the_message_then_the_config_choose_the_mode() -> None:
    assert requested_mode(HYBRID, MOSHI, CASCADE) is HYBRID
    assert requested_mode(None, "moshi_only", CASCADE) is MOSHI
    assert requested_mode("adaptive", None, CASCADE) is ADAPTIVE
    assert requested_mode(None, None, CASCADE) is CASCADE
    with pytest.raises(ValidationError) as raised:
        requested_mode(None, "fastest", CASCADE)
    assert str(raised.value) == (
        "unknown mode 'fastest'; use one of moshi_only, llm_enhanced, hybrid, adaptive"
    )


def test_decide_explicit_fallback_and_refusal() -> None:
    policy = AdaptivePolicy()
    down = {**ALL, MOSHI: "no server"}
    explicit = decide(MOSHI, ALL, policy, "c", "hi", allow_fallback=False)
    assert explicit == ModeDecision(MOSHI, MOSHI, "requested explicitly")
    fell = decide(MOSHI, down, policy, "c", "hi", allow_fallback=True)
    assert fell.as_dict() == {
        "requested": "moshi_only",
        "chosen": "llm_enhanced",
        "reason": "fell back to the cascade: no server",
        "fallback": True,
    }
    with pytest.raises(ConfigurationError) as raised:
        decide(MOSHI, down, policy, "c", "hi", allow_fallback=False)
    assert str(raised.value) == "moshi_only cannot answer: no server"


def test_a_known_reply_is_spoken_by_the_cascade() -> None:
    policy = AdaptivePolicy()
    for mode in (HYBRID, ADAPTIVE):
        known = decide(mode, ALL, policy, "c", "hi", allow_fallback=False, known_reply=True)
        assert (known.chosen, known.reason) == (CASCADE, KNOWN_REPLY)
    # An explicit Moshi turn is still Moshi's.
    assert decide(MOSHI, ALL, policy, "c", "hi", False, known_reply=True).chosen is MOSHI


def test_adaptive_decisions_carry_the_policy_explanation() -> None:
    decision = decide(ADAPTIVE, ALL, AdaptivePolicy(), "c", "Hi there", allow_fallback=False)
    assert decision.chosen is MOSHI and decision.requested is ADAPTIVE
    assert decision.reason == "moshi_only: the fastest available mode for a greeting"
    assert "reason" not in decision.details["adaptive"]
    assert decision.details["adaptive"]["wanted"] == "fastest"


def test_a_fallen_back_decision_records_what_failed() -> None:
    decision = ModeDecision(ADAPTIVE, MOSHI, "fastest", {"adaptive": {"wanted": "fastest"}})
    fallen = decision.fallen_back("moshi_only failed: gone")
    assert fallen.requested is ADAPTIVE and fallen.chosen is CASCADE
    assert fallen.reason == "fell back to llm_enhanced: moshi_only failed: gone"
    assert fallen.details == {
        "adaptive": {"wanted": "fastest"},
        "fallback": True,
        "failed": "moshi_only",
    }
    assert decision.fallen_back("x", HYBRID).chosen is HYBRID
    assert decision.details == {"adaptive": {"wanted": "fastest"}}  # the original is kept


# -- the turn clock and the prompt --------------------------------------------------------


def test_the_turn_clock_adds_durations_and_children_share_the_start() -> None:
    time = ManualClock()
    clock = TurnClock(time)
    time.now += 0.25
    assert clock.elapsed_ms() == pytest.approx(250.0)
    started = clock.since()
    assert started == time.now
    time.now += 0.1
    assert clock.stop(started) == pytest.approx(100.0)
    clock.add("tts", 40.0)
    clock.add("tts", 2.5)
    assert clock.marks == {"tts": 42.5}
    child = clock.child()
    child.mark("first_audio")
    assert child.marks == {"first_audio": pytest.approx(350.0)} and "first_audio" not in clock.marks
    assert TurnClock(time, start=time.now - 2.0).elapsed_ms() == pytest.approx(2000.0)


def _turn(index: int, context: str | None = None) -> ConversationTurn:
    return ConversationTurn(f"q{index}", f"a{index}", CASCADE, context=context)


def test_the_prompt_keeps_the_latest_turns_with_their_context() -> None:
    history = [_turn(1), _turn(2, "memo"), _turn(3)]
    messages = build_messages("sys", history, "now", max_turns=2, extra_context="tools")
    assert [(m.role, m.content) for m in messages] == [
        ("system", "sys"),
        ("system", "memo"),
        ("user", "q2"),
        ("assistant", "a2"),
        ("user", "q3"),
        ("assistant", "a3"),
        ("system", "tools"),
        ("user", "now"),
    ]
    styled = build_messages("sys", history, "now", 0, style="be brief", summary="they met")
    assert [(m.role, m.content) for m in styled] == [
        ("system", "sys\nbe brief"),
        ("system", "Earlier in this conversation: they met"),
        ("user", "now"),
    ]


# -- quality ---------------------------------------------------------------------------------


def test_relevance_is_the_smoothed_share_of_content_words() -> None:
    question = "What is the capital of France?"  # content words: capital, france
    assert quality.relevance(question, "Paris is the capital.") == pytest.approx(2 / 3)
    assert quality.relevance(question, "Paris.") == pytest.approx(1 / 3)
    assert quality.relevance("Do you like cats?", "I like a cat.") == 1.0  # plural folded
    assert quality.relevance("Do you like a cat?", "I like cats.") == pytest.approx(2 / 3)
    assert quality.relevance("What is it?", "Anything.") == 1.0  # nothing asked: neutral
    assert quality.relevance(question, "   ") == 0.0
    assert quality.content_words("'Tis the cat's toy") == {"tis", "cat's", "toy"}


def test_coherence_multiplies_its_factors() -> None:
    assert quality.coherence("The capital is Paris.", "stop") == 1.0
    assert quality.coherence("The capital is Paris.", "length") == pytest.approx(0.6)
    assert quality.coherence("The capital is Paris", None) == pytest.approx(0.85)
    assert quality.coherence("The capital is Paris", "length") == pytest.approx(0.51)
    # Four trigrams, three distinct.
    assert quality.coherence("a b c a b c!", "stop") == pytest.approx(0.75)
    for ending in ('"', ")", "…", "?"):
        assert quality.coherence(f"It is done{ending}", "stop") == 1.0
    assert quality.coherence("Yes sure", "stop") == pytest.approx(0.85)  # no trigrams
    assert quality.coherence("...", "stop") == 0.0


def test_audio_quality_multiplies_clipping_loudness_and_voicing() -> None:
    rate = 1000  # 20-sample frames
    loud = np.full(1000, 0.5)
    assert quality.audio_quality(loud, rate) == 1.0
    # Half the frames silent: voiced share 0.5 (RMS -9 dBFS is still fully loud).
    half = np.concatenate([np.full(500, 0.5), np.zeros(500)])
    assert quality.audio_quality(half, rate) == pytest.approx(0.5)
    # A quarter of the samples at the clip level: 0.75.
    clipped = np.tile([0.999, 0.5, 0.5, 0.5], 250)
    assert quality.audio_quality(clipped, rate) == pytest.approx(0.75)
    # -37 dBFS is halfway between -50 (0) and -24 (1).
    assert quality.audio_quality(np.full(1000, 10 ** (-37 / 20)), rate) == pytest.approx(0.5)
    assert quality.audio_quality(np.full(1000, 10 ** (-60 / 20)), rate) == 0.0
    # A frame whose peak is exactly the silence level counts as voiced.
    edge = np.tile(np.concatenate([[0.01], np.zeros(19)]), 50)
    weights = quality.QualityWeights(quiet_rms_dbfs=-120.0, target_rms_dbfs=-60.0)
    assert quality.audio_quality(edge, rate, weights) == 1.0
    # Shorter than a frame: voiced if its peak is.
    assert quality.audio_quality(np.full(10, 0.5), rate) == 1.0
    assert quality.audio_quality(np.full(10, 0.005), rate, weights) == 0.0
    assert quality.audio_quality(np.full(10, 0.5), 40) == 1.0  # frames of one sample
    assert quality.audio_quality(np.zeros(0), rate) == 0.0


# -- sentences ---------------------------------------------------------------------------


def test_a_long_sentence_is_cut_at_its_last_clause_or_space() -> None:
    text = "one two, three four; five six seven eight nine ten eleven"
    assert split_sentences(text, max_chars=30) == [
        "one two, three four;",
        "five six seven eight nine ten",
        "eleven",
    ]
    # No space within max_chars: nothing to cut at, the text waits whole.
    assert split_sentences("abcdefghijklmnopqrstuvwxyz", max_chars=10) == [
        "abcdefghijklmnopqrstuvwxyz"
    ]


def test_sentence_ends_quotes_ellipses_and_single_letters() -> None:
    assert split_sentences('He said "hi." Then he left… And so did I. Done!') == [
        'He said "hi."',
        "Then he left…",
        "And so did I.",
        "Done!",
    ]
    assert split_sentences("Ask J. Smith. Now.") == ["Ask J. Smith.", "Now."]
    assert split_sentences("Wait! What? Fine.") == ["Wait!", "What?", "Fine."]
    splitter = SentenceSplitter()
    assert splitter.feed("?!") == []  # punctuation alone is not a sentence
    assert splitter.flush() == "?!" and splitter.flush() is None


def test_list_items_start_after_a_colon_a_sentence_or_a_new_line() -> None:
    assert split_sentences("Steps:\n1. Mix it. 2. Bake it.") == [
        "Steps:\n1. Mix it.",
        "2. Bake it.",
    ]
    assert split_sentences("I have 12. It is enough.") == ["I have 12.", "It is enough."]


def test_the_first_piece_is_cut_at_a_phrase_once_long_enough() -> None:
    text = "The boiling point of pure water is one hundred degrees Celsius at sea level. "
    streamed = SentenceSplitter(first_clause_min_words=3, first_piece_max_words=6)
    pieces = [piece for word in text.split(" ") for piece in streamed.feed(word + " ")]
    assert pieces == [
        "The boiling point of pure water",
        "is one hundred degrees Celsius at sea level.",
    ]
    # Without a function word after the first words, the cut comes after max words.
    plain = "Alpha beta gamma delta epsilon zeta eta theta iota kappa. "
    assert split_sentences(plain, first_clause_min_words=3, first_piece_max_words=4) == [
        "Alpha beta gamma delta",
        "epsilon zeta eta theta iota kappa.",
    ]
    # Only the first piece is cut early; and a short first sentence needs no cut.
    splitter = SentenceSplitter(first_clause_min_words=2, first_piece_max_words=3)
    assert splitter.feed("Hello there, my friend. ") == ["Hello there,", "my friend."]
    assert splitter.feed("And what, is this long thing here then ") == []
    assert split_sentences("Hi, you.", first_clause_min_words=0, first_piece_max_words=3) == [
        "Hi, you."
    ]


# -- boundaries the first mutation run found unguarded -----------------------------------


def test_quality_of_the_running_average_starts_from_the_first_turn() -> None:
    stats = BackendStats()
    stats.record(100.0, 0.5, smoothing=0.3)
    stats.record(100.0, 1.0, smoothing=0.3)
    assert stats.quality == pytest.approx(0.65)


def test_measured_speed_and_quality_weigh_against_the_priors() -> None:
    small_talk = TurnFeatures.of("Hello")
    two = {MOSHI: None, CASCADE: None}
    policy = AdaptivePolicy()
    # A cascade measured instant and perfect: 1.0 + 0.5 beats Moshi's prior 1.0 + 0.25.
    policy.record_success("c", CASCADE, 0.0, 1.0)
    chosen, why = policy.choose("c", small_talk, two)
    assert chosen is CASCADE
    assert why["candidates"]["llm_enhanced"]["turns"] == 1
    assert why["candidates"]["moshi_only"]["turns"] == 0
    # In a demanding turn Moshi's prior strength (0.3) holds it back despite its quality:
    # 0.3 + 0.95 < 0.8 + 0.8.
    strong = AdaptivePolicy()
    strong.record_success("c", MOSHI, 100.0, 0.95)
    assert strong.choose("c", TurnFeatures.of("set a timer"), two)[0] is CASCADE


def test_the_mode_resting_longest_is_retried_whatever_its_name() -> None:
    clock = ManualClock()
    policy = AdaptivePolicy(max_failures=1, retry_after_seconds=60.0, now=clock)
    policy.record_failure("c", MOSHI)  # failed first: retried first
    clock.now = 1010.0
    policy.record_failure("c", CASCADE)
    assert policy.choose("c", TurnFeatures.of("Hello"), {MOSHI: None, CASCADE: None})[0] is MOSHI


def test_decisions_keep_the_request_and_the_conversation() -> None:
    policy = AdaptivePolicy()
    known = decide(HYBRID, ALL, policy, "c", "hi", allow_fallback=False, known_reply=True)
    assert known.requested is HYBRID
    for _ in range(2):
        policy.record_failure("c", MOSHI)
    # Moshi is resting in conversation "c" only.
    assert decide(ADAPTIVE, ALL, policy, "c", "Hi there", False).chosen is not MOSHI
    assert decide(ADAPTIVE, ALL, policy, "d", "Hi there", False).chosen is MOSHI


def test_a_history_of_one_turn_keeps_one_turn() -> None:
    messages = build_messages("sys", [_turn(1), _turn(2)], "now", max_turns=1)
    assert [m.content for m in messages] == ["sys", "q2", "a2", "now"]


def test_coherence_counts_distinct_trigrams_not_pairs() -> None:
    # Five trigrams, four distinct (pairs would repeat more: 3 of 5).
    assert quality.coherence("x a b c a b c!", "stop") == pytest.approx(0.8)
    # Four distinct trigrams, though words two apart repeat.
    assert quality.coherence("a x c a y c!", "stop") == 1.0
    assert quality.coherence("It is done.   ", "stop") == 1.0  # trailing space is no ending


def test_audio_frames_of_one_sample_and_a_short_peak_at_the_silence_level() -> None:
    # 40 Hz: one-sample frames, half of them silent.
    assert quality.audio_quality(np.tile([0.5, 0.0], 5), 40) == pytest.approx(0.5)
    weights = quality.QualityWeights(quiet_rms_dbfs=-120.0, target_rms_dbfs=-60.0)
    assert quality.audio_quality(np.full(10, 0.01), 1000, weights) == 1.0


def test_the_splitter_defaults() -> None:
    # 160 characters at most, no early first clause or phrase unless asked for.
    words = "word " * 32  # 160 characters
    splitter = SentenceSplitter()
    assert splitter.feed(words) == []
    assert splitter.feed("x") == [words.strip()]  # 161: past the limit
    assert split_sentences(words + "x") == [words.strip(), "x"]
    question = "Hello there, my friend, how are you today?"
    assert SentenceSplitter().feed(question) == [question]
    assert SentenceSplitter(first_clause_min_words=2).feed("One two three four five six ") == []
    assert SentenceSplitter().feed("Wow!") == ["Wow!"]  # "!" ends a sentence at once


def test_a_long_sentence_is_cut_within_max_chars() -> None:
    text = "five six seven eight nine ten eleven twelve"
    assert split_sentences(text, max_chars=30) == [
        "five six seven eight nine ten",
        "eleven twelve",
    ]
    assert split_sentences("a bcdefghijklmnop", max_chars=5) == ["a", "bcdefghijklmnop"]
    exact = SentenceSplitter(max_chars=9)
    assert exact.feed("abcd efgh") == []  # nine characters: not past the limit


def test_the_first_phrase_waits_for_whole_words() -> None:
    splitter = SentenceSplitter(first_clause_min_words=2, first_piece_max_words=4)
    assert splitter.feed("Alpha beta gamma delta epsi") == []  # "epsi" may go on
    assert splitter.feed("lon zeta ") == ["Alpha beta gamma delta"]
    # Five whole words and one that may go on: past four, so the cut comes now.
    early = SentenceSplitter(first_clause_min_words=2, first_piece_max_words=4)
    assert early.feed("Alpha beta gamma delta epsilon zeta") == ["Alpha beta gamma delta"]


@pytest.mark.parametrize(
    ("text", "clause_words", "piece_words", "first"),
    [
        # The last function word that leaves enough words in front opens the second piece.
        ("Alpha is beta gamma with delta ", 1, 3, "Alpha is beta gamma"),
        ("Alpha beta gamma delta epsilon with ", 1, 4, "Alpha beta gamma delta epsilon"),
        ("Alpha beta gamma is delta epsilon zeta ", 3, 5, "Alpha beta gamma"),
        # "and" would leave two words in front, fewer than three: cut after five words.
        ("Alpha beta and gamma delta epsilon zeta ", 3, 5, "Alpha beta and gamma delta"),
        ("Alpha beta gamma delta With epsilon ", 1, 3, "Alpha beta gamma delta"),  # any case
    ],
)
def test_the_first_phrase_is_cut_before_the_last_function_word(
    text: str, clause_words: int, piece_words: int, first: str
) -> None:
    splitter = SentenceSplitter(
        first_clause_min_words=clause_words, first_piece_max_words=piece_words
    )
    assert splitter.feed(text)[0] == first
