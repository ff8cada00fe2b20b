"""The built-in tools: date and time, calculator, unit conversion, memory search."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from coda.tools.calculator import MAX_LENGTH, evaluate, spoken_to_expression
from coda.tools.registry import Tool, ToolRegistry
from coda.tools.units import convert, parse_conversion

MemorySearch = Callable[[str, int], Awaitable[list[dict[str, Any]]]]
"""``await memory_search(query, limit)``: up to ``limit`` stored memories matching ``query``."""

MEMORY_TOOL = "search_memory"
"""The memory-search tool's name."""

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (  # noqa: SIM905
    "January February March April May June July August September October November December"
).split()


def get_datetime(timezone: str | None = None) -> dict[str, str]:
    """The current date and time, locally or in an IANA ``timezone`` ("Europe/Paris").

    Returns:
        ``{"iso": ..., "date": "Wednesday, 25 November 2026", "time": "14:05", "timezone": ...}``

    Raises:
        ValueError: If ``timezone`` is not a known IANA time zone.
    """
    if timezone is None:
        now = datetime.now().astimezone()
        zone_name = now.tzname() or "local"
    else:
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r}; use an IANA name") from None
        now = datetime.now(zone)
        zone_name = zone.key
    date = f"{_WEEKDAYS[now.weekday()]}, {now.day} {_MONTHS[now.month - 1]} {now.year}"
    return {
        "iso": now.isoformat(timespec="seconds"),
        "date": date,
        "time": f"{now:%H:%M}",
        "timezone": zone_name,
        "text": f"It is {now:%H:%M} on {date}.",
    }


def calculate(expression: str) -> dict[str, Any]:
    """Evaluate written ("17 * 23") or spoken ("17 times 23") arithmetic.

    Raises:
        ValueError: If the expression is not safe, valid arithmetic.
    """
    try:
        result = evaluate(expression)
    except ValueError:
        spoken = spoken_to_expression(expression)
        if spoken is None:
            raise
        expression, result = spoken, evaluate(spoken)
    return {"expression": expression, "result": result, "text": f"{expression} = {result}"}


def _spoken_arithmetic(words: str) -> dict[str, Any] | None:
    expression = spoken_to_expression(words)
    return {"expression": expression} if expression else None


def builtin_tools(memory_search: MemorySearch | None = None) -> list[Tool]:
    """The built-in tools; ``search_memory`` is included only when ``memory_search`` is given."""
    tools = [_datetime_tool(), _calculator_tool(), _units_tool()]
    if memory_search is not None:
        tools.append(_memory_tool(memory_search))
    return tools


def default_registry(memory_search: MemorySearch | None = None) -> ToolRegistry:
    """A registry holding ``builtin_tools(memory_search)``."""
    return ToolRegistry(builtin_tools(memory_search))


def _datetime_tool() -> Tool:
    return Tool(
        name="get_datetime",
        description=(
            "Get the current date, day of the week and time, optionally in a given time zone."
        ),
        parameters={
            "type": "object",
            "properties": {
                "timezone": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "description": "IANA time zone such as 'Europe/London'; default: local.",
                }
            },
            "additionalProperties": False,
        },
        run=get_datetime,
        parse=lambda words: {},  # "what time is it" needs no arguments
        keywords=("time", "date", "today", "clock", "what day", "weekday"),
    )


def _calculator_tool() -> Tool:
    return Tool(
        name="calculator",
        description=(
            "Evaluate an arithmetic expression exactly: + - * / // % **, parentheses, "
            "sqrt, abs, round, pi, e. Spoken forms such as '15 percent of 80' also work."
        ),
        parameters={
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 4 * MAX_LENGTH,
                    "description": "The arithmetic, e.g. '(17 * 23) / 4' or 'sqrt(16) + 2'.",
                }
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
        run=calculate,
        parse=_spoken_arithmetic,
        keywords=(
            "calculate",
            "times",
            "plus",
            "minus",
            "divided",
            "multiplied",
            "percent",
            "square root",
            "squared",
            "math",
            "sum",
            "equals",
        ),
    )


def _units_tool() -> Tool:
    return Tool(
        name="convert_units",
        description=(
            "Convert a quantity between units of length, mass, volume, temperature, speed, "
            "area, time, energy or data, e.g. 5 miles to kilometers or 100 celsius to fahrenheit."
        ),
        parameters={
            "type": "object",
            "properties": {
                "value": {"type": "number", "description": "The amount to convert."},
                "from_unit": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "description": "Unit of the value, e.g. 'miles', 'degC', 'pounds'.",
                },
                "to_unit": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "description": "Unit to convert to, e.g. 'km', 'fahrenheit', 'kg'.",
                },
            },
            "required": ["value", "from_unit", "to_unit"],
            "additionalProperties": False,
        },
        run=convert,
        parse=parse_conversion,
        keywords=(
            "convert",
            "conversion",
            "miles",
            "kilometers",
            "meters",
            "feet",
            "inches",
            "pounds",
            "kilograms",
            "ounces",
            "grams",
            "celsius",
            "fahrenheit",
            "degrees",
            "liters",
            "gallons",
            "cups",
        ),
        timeout_seconds=5.0,  # the first call builds pint's unit registry
    )


def _memory_tool(memory_search: MemorySearch) -> Tool:
    async def search_memory(query: str, limit: int = 5) -> dict[str, Any]:
        return {"query": query, "results": await memory_search(query, limit)}

    return Tool(
        name=MEMORY_TOOL,
        description=(
            "Search what the user said or asked to remember in earlier conversations; "
            "returns the most relevant stored snippets."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 500,
                    "description": "What to look for, in a few words.",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 10,
                    "default": 5,
                    "description": "How many results at most.",
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        run=search_memory,
        keywords=(
            "remember",
            "recall",
            "memory",
            "earlier",
            "last time",
            "told you",
            "said",
            "forgot",
            "remind",
        ),
        timeout_seconds=3.0,
    )
