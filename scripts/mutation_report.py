"""Summarize a ``mutmut run``: the mutation score per module and in all, and the survivors.

Run from the repository root after ``mutmut run`` (``make mutation`` does both). A
mutant counts as killed when a test failed or timed out under it; the score is killed
over all mutants, so a mutant that no selected test reaches counts against it.

Usage: python scripts/mutation_report.py [--min-score PERCENT]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = ("killed", "timeout")
_LINE = re.compile(r"^\s*(?P<name>coda\.[\w.]+?)\.(?P<function>x\S+): (?P<status>.+)$")


def results(mutmut: str) -> dict[str, Counter[str]]:
    """Each mutated module's mutants by status, from ``mutmut results --all true``."""
    listing = subprocess.run(
        [mutmut, "results", "--all", "true"], check=True, capture_output=True, text=True
    ).stdout
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for line in listing.splitlines():
        match = _LINE.match(line)
        if match:
            by_module[match["name"]][match["status"].strip()] += 1
    return by_module


def score(counts: Counter[str]) -> float:
    """Killed (failed or timed out) over all mutants, in percent."""
    total = sum(counts.values())
    return 100.0 * sum(counts[s] for s in KILLED) / total if total else 100.0


def report(by_module: dict[str, Counter[str]]) -> tuple[str, float]:
    """The table of modules and the overall score."""
    rows = [f"{'module':32} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} score"]
    overall: Counter[str] = Counter()
    for module in sorted(by_module):
        counts = by_module[module]
        overall.update(counts)
        killed = sum(counts[s] for s in KILLED)
        rows.append(
            f"{module:32} {sum(counts.values()):7} {killed:7} {counts['survived']:8} "
            f"{counts['no tests']:8} {score(counts):5.1f}%"
        )
    killed = sum(overall[s] for s in KILLED)
    rows.append(
        f"{'all':32} {sum(overall.values()):7} {killed:7} {overall['survived']:8} "
        f"{overall['no tests']:8} {score(overall):5.1f}%"
    )
    return "\n".join(rows), score(overall)


def main() -> int:
    """Print the report; exit 1 below ``--min-score``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-score", type=float, default=0.0, help="fail below this percent")
    parser.add_argument("--mutmut", default=str(Path(sys.executable).parent / "mutmut"))
    args = parser.parse_args()
    table, overall = report(results(args.mutmut))
    print(table)
    print("survivors: mutmut results; one mutant's change: mutmut show NAME")
    if overall < args.min_score:
        print(f"mutation score {overall:.1f}% is below {args.min_score:.1f}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
