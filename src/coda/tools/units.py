"""Unit conversion with pint, from one lazily built unit registry.

Unit names come from a language model, so they are held to what a unit name
looks like (words, ``/``, powers up to 3) before pint sees them: pint would
compute ``ft**10000000``. The registry is shared under a lock, and nobody waits
for it longer than ``LOCK_SECONDS``.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Iterator
from typing import Any

import pint

from coda.tools.calculator import evaluate, spoken_to_expression

MAX_UNIT_LENGTH = 64
"""Longest unit name accepted, in characters."""
LOCK_SECONDS = 2.0
"""Longest wait for the shared registry; past it the conversion fails (ValueError)."""
_UNIT_SHAPE = re.compile(r"\A[A-Za-z_]+(?:\*\*[1-3])?(?:/[A-Za-z_]+(?:\*\*[1-3])?)*\Z")

_registry: pint.UnitRegistry | None = None
_lock = threading.Lock()

_ALIASES = {
    "c": "degC",
    "celsius": "degC",
    "centigrade": "degC",
    "f": "degF",
    "fahrenheit": "degF",
    "k": "kelvin",
}
_PLURALS = {
    "foot": "feet",
    "inch": "inches",
    "degree_Celsius": "degrees Celsius",
    "degree_Fahrenheit": "degrees Fahrenheit",
    "kelvin": "kelvin",
    "hertz": "hertz",
    "stone": "stone",
    "century": "centuries",
}


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    """The registry's lock, waited for at most ``LOCK_SECONDS``.

    Raises:
        ValueError: If another conversion holds it longer.
    """
    if not _lock.acquire(timeout=LOCK_SECONDS):
        raise ValueError("the unit converter is busy; try again")
    try:
        yield
    finally:
        _lock.release()


def unit_registry() -> pint.UnitRegistry:
    """The module's unit registry, built on first use (it takes a fraction of a second)."""
    global _registry
    with _registry_lock():
        if _registry is None:
            _registry = pint.UnitRegistry()
        return _registry


def convert(value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    """Convert ``value`` from one unit to another.

    Names may be pint's ("km", "degF") or spoken ("miles", "degrees celsius",
    "miles per hour", "square feet").

    Returns:
        ``{"value": 8.05, "unit": "kilometer", "text": "5 miles is 8.05 kilometers"}``,
        the value rounded to 3 significant digits (whole numbers from 1000 up).

    Raises:
        ValueError: If the value is not finite, a unit is unknown, or the units
            measure different things.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"value must be a finite number, got {value!r}")
    registry = unit_registry()
    source = _parse_unit(registry, from_unit)
    target = _parse_unit(registry, to_unit)
    try:
        with _registry_lock():
            converted = registry.Quantity(value, source).to(target).magnitude
    except pint.DimensionalityError:
        raise ValueError(
            f"cannot convert {from_unit!r} to {to_unit!r}: "
            f"{source.dimensionality} and {target.dimensionality} measure different things"
        ) from None
    except pint.PintError as exc:
        raise ValueError(f"cannot convert {from_unit!r} to {to_unit!r}: {exc}") from None
    if "[temperature]" in str(target.dimensionality):
        converted = round(converted, 9)  # offsets leave residue: 32 °F is 5.7e-14 °C
    result = _round(float(converted))
    text = f"{_show(value)} {_name(source, value)} is {_show(result)} {_name(target, result)}"
    return {"value": result, "unit": str(target), "text": text}


def _parse_unit(registry: pint.UnitRegistry, name: str) -> pint.Unit:
    """The unit named ``name``, accepting spoken forms."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a unit name is required")
    if len(name) > MAX_UNIT_LENGTH:
        raise ValueError(f"unit name is too long (at most {MAX_UNIT_LENGTH} characters)")
    normalized = _normalize(name)
    if not _UNIT_SHAPE.match(normalized):
        raise ValueError(f"unknown unit {name!r}: a unit is words, '/' and powers up to 3")
    with _registry_lock():
        for candidate in dict.fromkeys((normalized, normalized.lower())):
            try:
                return registry.parse_units(candidate)
            except Exception:  # pint raises several unrelated types for bad names
                continue
    raise ValueError(f"unknown unit {name!r}")


def _normalize(name: str) -> str:
    """Spoken unit names in pint's syntax: "degrees Celsius" → "degC", "per" → "/".

    Case is kept ("mL", "MB"), except where a spoken alias such as "celsius" matches.
    """
    text = " ".join(name.replace("°", "deg ").split())
    text = re.sub(r"^(?:degrees?|deg)\s+(?=[a-z]+$)", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\bsquare\s+(\w+)", r"\1**2", text, flags=re.IGNORECASE)
    text = re.sub(r"\bcubic\s+(\w+)", r"\1**3", text, flags=re.IGNORECASE)
    parts = re.split(r"\s+per\s+|\s*/\s*", text, flags=re.IGNORECASE)
    return "/".join(_ALIASES.get(part.lower(), part.replace(" ", "_")) for part in parts)


def _round(value: float) -> int | float:
    """Three significant digits, whole numbers from 1000 up; ints when whole."""
    rounded = float(round(value)) if abs(value) >= 1000 else float(f"{value:.3g}")
    return int(rounded) if rounded.is_integer() else rounded


def _show(value: float) -> str:
    """A number as spoken text: no trailing ".0", no exponent for ordinary sizes."""
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value)}"
    return f"{value:g}" if abs(value) < 1e-4 else f"{value:.10g}"


def _name(unit: pint.Unit, value: float) -> str:
    """A readable unit name, plural unless ``value`` is one: "kilometers", "miles per hour"."""
    text = str(unit).replace("_per_", " / ")
    head, _, tail = text.partition(" / ")
    power = re.fullmatch(r"(\w+) \*\* ([23])", head)
    if power:
        head = power.group(1)
    elif "*" in head:
        return text.replace(" ** ", "^").replace("_", " ")
    tail = re.sub(r"^(\w+) \*\* 2$", r"\1 squared", tail)
    if "*" in tail or "/" in tail:
        return text.replace(" ** ", "^").replace("_", " ")
    if value != 1:
        head = _PLURALS.get(head, head if head.endswith("s") else head + "s")
    words = head.replace("_", " ")
    if power:
        words = ("square " if power.group(2) == "2" else "cubic ") + words
    return f"{words} per {tail.replace('_', ' ')}" if tail else words


_NUMBER = r"(?P<value>-?\d+(?:[.,]\d+)?|[a-z]+(?:[ -][a-z]+)?)"
_UNIT = r"[a-z][a-z ]{0,30}?"
_CONVERSIONS = (
    re.compile(
        rf"^(?:please\s+)?(?:convert\s+)?{_NUMBER}\s+(?P<source>{_UNIT})\s+(?:to|into|in)\s+"
        rf"(?P<target>{_UNIT})$"
    ),
    re.compile(
        rf"^(?:what\s+is|what's)\s+{_NUMBER}\s+(?P<source>{_UNIT})\s+(?:to|into|in)\s+"
        rf"(?P<target>{_UNIT})$"
    ),
    re.compile(
        rf"^how\s+many\s+(?P<target>{_UNIT})\s+(?:is|are|in|make)\s+(?:there\s+in\s+)?"
        rf"{_NUMBER}\s+(?P<source>{_UNIT})$"
    ),
)


def parse_conversion(text: str) -> dict[str, Any] | None:
    """Arguments of ``convert`` read from a request, or None.

    Understands "convert 5 miles to km", "what is 5 miles in km" and "how many
    kilometers is five miles".
    """
    words = " ".join(text.lower().strip().rstrip("?.!").split())
    for pattern in _CONVERSIONS:
        match = pattern.match(words)
        if match is None:
            continue
        number = match["value"].replace(",", ".")
        try:
            value = float(evaluate(spoken_to_expression(number) or number))
        except ValueError:
            continue  # not a number: another wording may still fit
        return {"value": value, "from_unit": match["source"], "to_unit": match["target"]}
    return None
