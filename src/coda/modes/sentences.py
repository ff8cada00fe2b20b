"""Split a streaming reply into speakable pieces as soon as each one is complete.

A piece ends at sentence punctuation followed by a space, except after a known
abbreviation ("Dr.", "e.g.") or inside a number ("3.14"); "!" and "?" end it at
once. A sentence that runs
past ``max_chars`` is cut at its last clause boundary (comma, semicolon, colon,
dash) so synthesis never waits on a very long sentence. The first piece of a
reply may end at a clause boundary once it has ``first_clause_min_words`` words,
or at a phrase boundary once it has ``first_piece_max_words``, so the first
audio comes sooner.
"""

from __future__ import annotations

import re

# fmt: off
ABBREVIATIONS = frozenset((
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "a.m",
    "p.m", "no", "approx", "dept", "est", "fig", "inc", "ltd", "co", "u.s", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mt",
))
# fmt: on
_END = re.compile(r"([.!?…]+[\"')\]]*)(\s+)")
_CLAUSE = re.compile(r"[,;:—–]\s")
# fmt: off
PHRASE_STARTS = frozenset((
    "is", "are", "was", "were", "will", "would", "can", "could", "has", "have", "had",
    "at", "in", "on", "with", "which", "that", "because", "when", "where", "while", "for",
    "to", "from", "by", "and", "but", "or", "so", "than", "as", "about",
))
# fmt: on
_LIST_NUMBER = re.compile(r"(^|[:.!?]\s*|\n\s*)\d{1,2}$")
_CLAUSE_END = re.compile(r"(?<!\d)[,;:—–](\s+)")


class SentenceSplitter:
    """Incremental splitter: feed text deltas, take finished sentences."""

    def __init__(
        self, max_chars: int = 160, first_clause_min_words: int = 0, first_piece_max_words: int = 0
    ) -> None:
        self._buffer = ""
        self._max_chars = max_chars
        self._first_clause_words = first_clause_min_words
        self._first_piece_words = first_piece_max_words
        self._emitted = 0

    def feed(self, delta: str) -> list[str]:
        """Add a delta; return the sentences it completed."""
        self._buffer += delta
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            piece, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if piece:
                out.append(piece)
                self._emitted += 1
        return out

    def flush(self) -> str | None:
        """Return whatever is left (the reply's tail)."""
        piece, self._buffer = self._buffer.strip(), ""
        return piece or None

    def _find_cut(self) -> int | None:
        cuts = [self._sentence_end(), self._first_clause_end()]
        found = [cut for cut in cuts if cut is not None]
        if found:
            return min(found)
        if len(self._buffer) > self._max_chars:
            clauses = list(_CLAUSE.finditer(self._buffer, 0, self._max_chars))
            if clauses:
                return clauses[-1].end()
            space = self._buffer.rfind(" ", 0, self._max_chars)
            if space > 0:
                return space + 1
        return None

    def _sentence_end(self) -> int | None:
        for match in _END.finditer(self._buffer):
            if not self._is_abbreviation(match.start()) and not self._is_list_number(match.start()):
                return match.end()
        # "!" and "?" end a sentence at once: unlike ".", they open no abbreviation
        # or number, so synthesis need not wait for the next token.
        if self._buffer.endswith(("!", "?")) and any(ch.isalnum() for ch in self._buffer):
            return len(self._buffer)
        return None

    def _first_clause_end(self) -> int | None:
        if self._emitted or not self._first_clause_words:
            return None
        for clause in _CLAUSE_END.finditer(self._buffer):
            if len(self._buffer[: clause.start()].split()) >= self._first_clause_words:
                return clause.end()
        return self._first_phrase_end()

    def _first_phrase_end(self) -> int | None:
        """Cut a long first sentence at a phrase boundary once it has enough words.

        The cut goes before the last function word ("is", "at", "with", ...) that
        leaves at least ``first_clause_min_words`` words in front, so the first
        piece is a natural phrase ("The boiling point of water | is 100 degrees").
        """
        if not self._first_piece_words:
            return None
        words = list(re.finditer(r"\S+", self._buffer))
        # Only words followed by a space are complete.
        complete = words if self._buffer[-1:].isspace() else words[:-1]
        if len(complete) <= self._first_piece_words:
            return None
        for index in range(len(complete) - 1, self._first_clause_words - 1, -1):
            if complete[index].group().lower() in PHRASE_STARTS:
                return complete[index].start()
        return complete[self._first_piece_words].start()

    def _is_list_number(self, dot: int) -> bool:
        # "1." opening a list item (at the start, after a colon or after a sentence).
        return bool(_LIST_NUMBER.search(self._buffer[:dot]))

    def _is_abbreviation(self, dot: int) -> bool:
        if self._buffer[dot] != ".":
            return False
        word = re.search(r"([A-Za-z.]+)$", self._buffer[:dot])
        if word is None:
            return False
        token = word.group(1).lower()
        return token in ABBREVIATIONS or (len(token) == 1 and token.isalpha() and token != "i")


def split_sentences(
    text: str, max_chars: int = 160, first_clause_min_words: int = 0, first_piece_max_words: int = 0
) -> list[str]:
    """Split a whole text the way the streaming splitter would."""
    splitter = SentenceSplitter(max_chars, first_clause_min_words, first_piece_max_words)
    pieces = splitter.feed(text)
    tail = splitter.flush()
    return [*pieces, tail] if tail else pieces
