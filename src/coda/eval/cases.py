"""The eval's cases: loaded from a TOML data file shipped with Coda.

A ``pair`` tells a fact in one conversation and asks about it in a new one; it
becomes one case per voice (typed, Piper, espeak-ng), in the categories
``recall/typed``, ``recall/piper`` and ``recall/espeak``. A ``case`` lists its
conversations turn by turn and is typed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from coda.core.errors import ValidationError

VOICES = ("typed", "piper", "espeak")
"""How a turn reaches Coda: as text, or spoken by the embedded voice or espeak-ng."""


@dataclass(frozen=True)
class EvalTurn:
    """One user turn and what its reply must (``expect``) and must not (``forbid``) match.

    Attributes:
        say: The user's words.
        expect: Regexes that must all match the reply (case-insensitive).
        forbid: Regexes none of which may match it.
        recall: A regex the memories put into this turn must match; those that
            do not count as unrelated. None: a checked turn should get none.
    """

    say: str
    expect: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    recall: str | None = None

    @property
    def checked(self) -> bool:
        """The reply is judged."""
        return bool(self.expect or self.forbid)

    def failures(self, reply: str) -> list[str]:
        """What the reply got wrong (empty: it passed)."""
        missing = [f"missing /{p}/" for p in self.expect if not re.search(p, reply, re.I)]
        return missing + [f"forbidden /{p}/" for p in self.forbid if re.search(p, reply, re.I)]


@dataclass(frozen=True)
class EvalCase:
    """A scripted exchange: conversations (each a new one) of turns, in one voice."""

    id: str
    category: str
    conversations: tuple[tuple[EvalTurn, ...], ...]
    voice: str = "typed"
    pattern: str = ""
    fast: bool = False
    tags: dict[str, Any] = field(default_factory=dict)


def default_cases_path() -> Path:
    """The data file shipped with Coda."""
    return Path(str(resources.files("coda.eval") / "data" / "conversations.toml"))


def _turn(raw: dict[str, Any]) -> EvalTurn:
    if not isinstance(raw.get("say"), str) or not raw["say"].strip():
        raise ValidationError(f"an eval turn needs 'say': {raw!r}")
    turn = EvalTurn(
        raw["say"], tuple(raw.get("expect", ())), tuple(raw.get("forbid", ())), raw.get("recall")
    )
    for pattern in (*turn.expect, *turn.forbid, *([turn.recall] if turn.recall else [])):
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ValidationError(f"bad pattern {pattern!r} in {turn.say!r}: {exc}") from exc
    return turn


@dataclass(frozen=True)
class CaseFilter:
    """Which cases run.

    Attributes:
        fast: Only those marked fast (the subset ``make test`` runs).
        voices: The voices recall pairs are said in.
        categories: Category prefixes to run ("recall" runs every voice's); empty: all.
    """

    fast: bool = False
    voices: tuple[str, ...] = VOICES
    categories: tuple[str, ...] = ()

    def keeps(self, case: EvalCase) -> bool:
        """``case`` runs."""
        wanted = not self.categories or case.category.startswith(self.categories)
        return wanted and (case.fast or not self.fast)


def load_cases(path: Path | None = None, chosen: CaseFilter | None = None) -> list[EvalCase]:
    """The cases in ``path`` (default: the shipped file) that ``chosen`` keeps.

    Raises:
        ValidationError: If the file is not a valid case file.
    """
    chosen = chosen or CaseFilter()
    voices = chosen.voices
    try:
        data = tomllib.loads((path or default_cases_path()).read_text(encoding="utf-8"))
        cases: list[EvalCase] = []
        for pair in data.get("pair", []):
            tell = _turn({"say": pair["tell"]})
            expect = list(pair["expect"])
            ask = _turn(
                {"say": pair["ask"], "expect": expect, "forbid": pair.get("forbid", []),
                 "recall": pair.get("recall", "|".join(expect))}
            )  # fmt: skip
            for voice in voices:
                cases.append(
                    EvalCase(pair["id"], f"recall/{voice}", ((tell,), (ask,)), voice,
                             pair.get("pattern", ""), bool(pair.get("fast")))
                )  # fmt: skip
        for case in data.get("case", []):
            conversations = tuple(tuple(_turn(t) for t in c) for c in case["conversations"])
            cases.append(
                EvalCase(case["id"], case["category"], conversations, fast=bool(case.get("fast")))
            )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise ValidationError(f"bad eval case file: {exc}") from exc
    return [c for c in cases if chosen.keeps(c)]
