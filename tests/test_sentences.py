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
    tail = splitter.flush()
    assert [*out, tail] == split_sentences(text)
    # A sentence is released only once the next one has started (its end is certain).
    assert out == ["The capital of France is Paris.", "It is lovely in spring!"]


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
