"""The eval's figures: accuracy per category, the targets' measures, a table and a chart."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from coda.eval.cases import EvalCase
from coda.eval.runner import CaseResult, TurnResult

SPOKEN = ("recall/piper", "recall/espeak")


@dataclass
class EvalReport:
    """One run of the eval (one language model and recognizer)."""

    label: str
    results: list[CaseResult]

    def categories(self) -> list[str]:
        """The categories run, in the order first seen."""
        return list(dict.fromkeys(r.case.category for r in self.results))

    def accuracy(self, *categories: str) -> float | None:
        """The share of passed cases in ``categories`` (None if none ran)."""
        cases = [r for r in self.results if r.case.category in categories]
        return sum(r.passed for r in cases) / len(cases) if cases else None

    def _turns(self) -> Iterator[tuple[EvalCase, TurnResult]]:
        return ((r.case, t) for r in self.results for t in r.turns)

    def _checked(self) -> list[TurnResult]:
        return [t for _, t in self._turns() if t.turn.checked]

    def _share(self, counts: Callable[[TurnResult], bool]) -> float:
        turns = self._checked()
        return sum(counts(t) for t in turns) / len(turns) if turns else 0.0

    @property
    def perspective_errors(self) -> int:
        """Replies that say "my X" back for the user's "my X"."""
        return sum(t.perspective_error for t in self._checked())

    @property
    def invented_rate(self) -> float | None:
        """The share of never-told cases answered with something other than "I don't know"."""
        told = self.accuracy("unknown")
        return None if told is None else 1.0 - told

    @property
    def unrelated_rate(self) -> float:
        """The share of checked turns given a memory they should not have had."""
        return self._share(lambda t: bool(t.unrelated))

    @property
    def from_memory_rate(self) -> float:
        """The share of checked turns answered from memory rather than by the LLM."""
        return self._share(lambda t: t.answered_from_memory)

    def median_ms(self) -> float:
        """The median time of a turn (the whole reply, synthesis included)."""
        times = [t.milliseconds for _, t in self._turns()]
        return statistics.median(times) if times else 0.0

    def llm_first_audio_ms(self) -> float:
        """The median time to the first reply audio of the turns the LLM answered."""
        times = [
            t.first_audio_ms
            for _, t in self._turns()
            if not t.answered_from_memory and t.first_audio_ms is not None
        ]
        return statistics.median(times) if times else 0.0

    def failures(self) -> list[str]:
        """One line per failed checked turn, with what was heard before it."""
        lines = []
        for result in self.results:
            for index, turn in enumerate(result.turns):
                if turn.failures:
                    before = "".join(f"{t.heard!r} / " for t in result.turns[:index])
                    lines.append(
                        f"{result.case.category} {result.case.id}: {before}{turn.heard!r} -> "
                        f"{turn.reply!r} ({'; '.join(turn.failures)})"
                    )
        return lines

    def perspective(self) -> list[str]:
        """One line per reply that said "my X" back."""
        return [
            f"{c.category} {c.id}: {t.heard!r} -> {t.reply!r}"
            for c, t in self._turns()
            if t.perspective_error
        ]

    def unrelated(self) -> list[str]:
        """One line per checked turn given memories it should not have had."""
        return [
            f"{c.category} {c.id}: {t.heard!r} got {list(t.unrelated)}"
            for c, t in self._turns()
            if t.unrelated
        ]


def _pct(value: float | None) -> str:
    return "   -" if value is None else f"{value * 100:4.0f}%"


def format_report(reports: Sequence[EvalReport]) -> str:
    """Accuracy per category and the targets' measures, one column per run."""
    width = max(12, *(len(r.label) + 2 for r in reports))
    categories = list(dict.fromkeys(c for r in reports for c in r.categories()))
    lines = [f"{'category':<20}{'cases':>6}" + "".join(f"{r.label:>{width}}" for r in reports)]
    for category in categories:
        count = sum(r.case.category == category for r in reports[0].results)
        cells = "".join(f"{_pct(r.accuracy(category)):>{width}}" for r in reports)
        lines.append(f"{category:<20}{count:>6}{cells}")
    rows = [
        ("recall spoken", lambda r: _pct(r.accuracy(*SPOKEN))),
        ("perspective errors", lambda r: str(r.perspective_errors)),
        ("invented facts", lambda r: _pct(r.invented_rate)),
        ("unrelated memories", lambda r: _pct(r.unrelated_rate)),
        ("answered from memory", lambda r: _pct(r.from_memory_rate)),
        ("median turn ms", lambda r: f"{r.median_ms():.0f}"),
        ("LLM turns: first audio ms", lambda r: f"{r.llm_first_audio_ms():.0f}"),
    ]
    lines.append("")
    for name, cell in rows:
        lines.append(f"{name:<26}" + "".join(f"{cell(r):>{width}}" for r in reports))
    return "\n".join(lines)


def plot_report(reports: Sequence[EvalReport], path: Path) -> Path:
    """A grouped bar chart of accuracy per category, one bar per run, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = list(dict.fromkeys(c for r in reports for c in r.categories()))
    figure, axes = plt.subplots(figsize=(max(6.0, len(categories) * 0.9), 4.0))
    width = 0.8 / max(1, len(reports))
    for index, report in enumerate(reports):
        values = [(report.accuracy(c) or 0.0) * 100 for c in categories]
        positions = [i + index * width for i in range(len(categories))]
        axes.bar(positions, values, width, label=report.label)
    axes.set_xticks([i + width * (len(reports) - 1) / 2 for i in range(len(categories))])
    axes.set_xticklabels(categories, rotation=30, ha="right")
    axes.set_ylabel("cases passed (%)")
    axes.set_ylim(0, 105)
    axes.set_title("coda eval")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
