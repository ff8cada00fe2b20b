"""Sentence splitting of a streamed reply."""

from __future__ import annotations

from coda.modes.sentences import SentenceSplitter, split_sentences


def test_splits_at_sentence_ends() -> None:
    assert split_sentences("Hello there! How are you? I am fine.") == [
        "Hello there!",
        "How are you?",
        "I am fine.",
    ]


def test_keeps_abbreviations_and_numbers_together() -> None:
    text = "Dr. Smith met Mr. Jones at 3.30 p.m. today. Pi is 3.14159, roughly."
    assert split_sentences(text) == [
        "Dr. Smith met Mr. Jones at 3.30 p.m. today.",
        "Pi is 3.14159, roughly.",
    ]
    assert split_sentences("See e.g. the U.S. map. Then go.") == [
        "See e.g. the U.S. map.",
        "Then go.",
    ]


def test_streaming_deltas_give_the_same_sentences() -> None:
    text = "The capital of France is Paris. It is lovely in spring! Want more?"
    splitter = SentenceSplitter()
    out: list[str] = []
    for i in range(0, len(text), 3):
        out.extend(splitter.feed(text[i : i + 3]))
    assert splitter.flush() is None
    assert out == split_sentences(text)
    # "." is released only once the next sentence has started (it could be "3.14" or
    # "Dr."); "!" and "?" at once, so the last question needs no flush.
    assert out == ["The capital of France is Paris.", "It is lovely in spring!", "Want more?"]


def test_long_sentences_are_cut_at_clauses() -> None:
    long = (
        "This is a very long sentence that keeps going, with many clauses and words, "
        "so that nobody would want to wait for its end before hearing anything at all, "
        "which is why it must be cut"
    )
    pieces = split_sentences(long, max_chars=80)
    assert len(pieces) >= 3
    assert all(len(piece) <= 80 for piece in pieces)
    assert " ".join(pieces) == long


def test_list_numbers_stay_with_their_item() -> None:
    assert split_sentences("Here are facts: 1. Water covers most of Earth. 2. It is deep.") == [
        "Here are facts: 1. Water covers most of Earth.",
        "2. It is deep.",
    ]


def test_first_clause_is_released_early() -> None:
    text = "The capital of France, as you may know, is Paris. It is lovely."
    assert split_sentences(text, first_clause_min_words=4) == [
        "The capital of France,",
        "as you may know, is Paris.",
        "It is lovely.",
    ]
    # Too short a clause waits for more words; numbers like 1,000 are not clauses.
    assert split_sentences("Sure, it costs 1,000 euros.", first_clause_min_words=4) == [
        "Sure, it costs 1,000 euros."
    ]
