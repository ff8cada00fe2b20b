"""The tool registry and the built-in tools: calculator, unit conversion, date and time."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from coda.deadline import ManualClock
from coda.tools.builtin import builtin_tools, calculate, default_registry, get_datetime
from coda.tools.calculator import MAX_LENGTH, evaluate, spoken_to_expression
from coda.tools.registry import Tool, ToolRegistry
from coda.tools.units import convert

OBJECT: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
HANG_GUARD_SECONDS = 120.0
"""Only guards against a hang: no test waits for this, however loaded the machine."""

# --- calculator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("17 * 23", 391),
        ("17*23", 391),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("10 - 4 - 3", 3),
        ("2 * (3 + (4 - 1)) / 3", 4),
        ("7 / 2", 3.5),
        ("1 / 8", 0.125),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("2 ^ 8", 256),
        ("-3 ** 2", -9),
        ("(-3) ** 2", 9),
        ("2 ** -2", 0.25),
        ("+5 - -5", 10),
        ("sqrt(16)", 4),
        ("sqrt(2)", 1.414213562),
        ("abs(-5.5)", 5.5),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("0.1 + 0.2", 0.3),
        ("1 / 3", 0.3333333333),
        ("2 * pi", 6.283185307),
        ("e", 2.718281828),
        ("2 ** 100", 1267650600228229401496703205376),
    ],
)
def test_evaluate(expression: str, expected: float) -> None:
    assert evaluate(expression) == expected


def test_exact_results_are_ints_and_floats_are_rounded() -> None:
    assert evaluate("10 / 2") == 5 and isinstance(evaluate("10 / 2"), int)
    assert evaluate("15 / 100 * 80") == 12 and isinstance(evaluate("15 / 100 * 80"), int)
    assert isinstance(evaluate("7 / 2"), float)
    # exactly 10 significant digits: 2/3 = 0.6666666666666666 -> 0.6666666667
    assert repr(evaluate("2 / 3")) == "0.6666666667"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('ls')", "only calls to sqrt, abs, round"),
        ("().__class__", "attribute access"),
        ("open('x')", "calls to 'open' are not allowed"),
        ("[1]*10**9", "lists are not allowed"),
        ("9**9**9", "exponent 387420489 is too large"),
        ("1" * 1000, "too long"),
        ("1 + " * 300 + "1", "too long"),
        ("lambda: 1", "lambdas are not allowed"),
        ("x + 1", "name 'x' is not allowed"),
        ("'a' * 3", "strings are not allowed"),
        ("(1).real", "attribute access"),
        ("[i for i in range(10)]", "comprehensions are not allowed"),
        ("{1: 2}[1]", "subscripts are not allowed"),
        ("1 if 2 else 3", "conditional expressions are not allowed"),
        ("1 < 2", "comparisons are not allowed"),
        ("True + 1", "booleans are not allowed"),
        ("1j * 2", "complex numbers are not allowed"),
        ("1 << 4", "the << operator is not allowed"),
        ("~1", "the ~ operator is not allowed"),
        ("sqrt(x=4)", "keyword arguments are not allowed"),
        ("sqrt(1, 2)", "sqrt takes 1 argument"),
        ("import os", "not a valid arithmetic expression"),
        ("2 +", "not a valid arithmetic expression"),
        ("", "empty"),
    ],
)
def test_evaluate_rejects_what_is_not_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("2 ** 101", "exponent 101 is too large"),
        ("2 ** -101", "exponent -101 is too large"),
        ("10 ** 100 * 10", "too large"),
        ("(10 ** 50) ** 3", "too large"),
        ("0.001 ** -50", "too large"),
        ("1e400", "too large"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("sqrt(-4)", "square root of a negative number"),
        ("(-8) ** 0.5", "not a real number"),
        ("-" * 60 + "1", "nested too deeply"),
    ],
)
def test_evaluate_limits(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(expression)


def test_limits_leave_room_for_ordinary_sums() -> None:
    assert evaluate("10 ** 100") == 10**100
    assert evaluate("(" * 40 + "6" + ")" * 40) == 6
    long_sum = "+".join(["1"] * ((MAX_LENGTH + 1) // 2))
    assert len(long_sum) <= MAX_LENGTH
    with pytest.raises(ValueError, match="nested too deeply"):
        evaluate(long_sum)  # 100 chained additions is deeper than MAX_DEPTH
    assert evaluate("+".join(["1"] * 40)) == 40


@pytest.mark.parametrize(
    ("text", "expression", "value"),
    [
        ("what is 17 times 23", "17 * 23", 391),
        ("What is 17 times 23?", "17 * 23", 391),
        ("twelve plus five", "12 + 5", 17),
        ("fifteen percent of eighty", "15 / 100 * 80", 12),
        ("15 percent of 80", "15 / 100 * 80", 12),
        ("What's 15% of 80?", "15 / 100 * 80", 12),
        ("square root of 16", "sqrt(16)", 4),
        ("what's the square root of sixty-four plus one", "sqrt(64) + 1", 9),
        ("100 divided by 8", "100 / 8", 12.5),
        ("ninety nine minus forty-two", "99 - 42", 57),
        ("six multiplied by seven", "6 * 7", 42),
        ("3 x 4", "3 * 4", 12),
        ("nine squared", "9 ** 2", 81),
        ("two to the power of ten", "2 ** 10", 1024),
        ("one hundred and five divided by three", "105 / 3", 35),
        ("two thousand twenty four plus one", "2024 + 1", 2025),
        ("a thousand minus one", "1000 - 1", 999),
        ("three point five times two", "3.5 * 2", 7),
        ("1,500 plus 2,500", "1500 + 2500", 4000),
        ("ten mod three", "10 % 3", 1),
    ],
)
def test_spoken_to_expression(text: str, expression: str, value: float) -> None:
    assert spoken_to_expression(text) == expression
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "text",
    ["what time is it", "hello there", "seventeen", "", "__import__('os')", "[1] times 2"],
)
def test_spoken_to_expression_returns_none_for_other_text(text: str) -> None:
    assert spoken_to_expression(text) is None


def test_calculate_accepts_written_and_spoken_arithmetic() -> None:
    said = {"expression": "17 * 23", "result": 391, "text": "17 * 23 = 391"}
    assert calculate("17 * 23") == said
    assert calculate("What is 17 times 23?") == said
    with pytest.raises(ValueError, match="calls to 'open' are not allowed"):
        calculate("open('x')")


# --- units ------------------------------------------------------------------------------


def test_convert_miles_to_kilometers() -> None:
    converted = convert(5, "miles", "km")
    assert converted["value"] == pytest.approx(8.05, abs=0.01)
    assert converted["unit"] == "kilometer"
    assert converted["text"] == "5 miles is 8.05 kilometers"


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (100, "celsius", "fahrenheit", 212),
        (100, "°C", "°F", 212),
        (32, "degrees Fahrenheit", "degrees Celsius", 0),
        (-40, "F", "C", -40),
        (300, "kelvin", "celsius", 26.9),
        (10, "pounds", "kg", 4.54),
        (1, "foot", "inches", 12),
        (60, "miles per hour", "km/h", 96.6),
        (1, "square mile", "acres", 640),
        (250, "mL", "cups", 1.06),
        (3, "gallons", "liters", 11.4),
        (5, "km", "mm", 5_000_000),
    ],
)
def test_convert(value: float, source: str, target: str, expected: float) -> None:
    assert convert(value, source, target)["value"] == pytest.approx(expected, abs=1e-9)


def test_convert_temperature_text() -> None:
    assert convert(100, "celsius", "fahrenheit")["text"] == (
        "100 degrees Celsius is 212 degrees Fahrenheit"
    )


@pytest.mark.parametrize(
    ("value", "source", "target", "message"),
    [
        (1, "meter", "second", "cannot convert 'meter' to 'second'"),
        (5, "kilograms", "celsius", "measure different things"),
        (1, "blargh", "m", "unknown unit 'blargh'"),
        (1, "m", "__import__('os')", "unknown unit"),
        (1, "", "m", "unit name is required"),
        (1, "m" * 100, "ft", "too long"),
        (float("nan"), "m", "ft", "finite number"),
    ],
)
def test_convert_rejects(value: float, source: str, target: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert(value, source, target)


# --- date and time ----------------------------------------------------------------------


def test_get_datetime_in_a_timezone_is_now_there() -> None:
    zone = ZoneInfo("Asia/Tokyo")
    before = datetime.now(zone)
    info = get_datetime("Asia/Tokyo")
    after = datetime.now(zone)
    stamp = datetime.fromisoformat(info["iso"])
    assert before.replace(microsecond=0) <= stamp <= after
    assert stamp.utcoffset() == timedelta(hours=9)
    assert info["timezone"] == "Asia/Tokyo"
    assert info["date"] in {f"{d:%A}, {d.day} {d:%B %Y}" for d in (before, after)}
    assert info["time"] in {f"{d:%H:%M}" for d in (before, after)}


def test_get_datetime_local_is_today() -> None:
    before = datetime.now().astimezone()
    info = get_datetime()
    after = datetime.now().astimezone()
    assert datetime.fromisoformat(info["iso"]).date() in {before.date(), after.date()}
    assert info["date"] in {f"{d:%A}, {d.day} {d:%B %Y}" for d in (before, after)}
    assert info["timezone"] == before.tzname()


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "not a zone"])
def test_get_datetime_rejects_bogus_timezones(zone: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        get_datetime(zone)


# --- registry ---------------------------------------------------------------------------


def make_tool(run: Any, name: str = "probe", timeout: float = 2.0, **schema: Any) -> Tool:
    parameters = {**OBJECT, **schema}
    return Tool(name, "A test tool.", parameters, run, ("probe",), timeout_seconds=timeout)


def test_register_rejects_duplicates_and_bad_tools() -> None:
    registry = ToolRegistry([make_tool(lambda: 1)])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(make_tool(lambda: 2))
    with pytest.raises(ValueError, match="invalid tool name"):
        make_tool(lambda: 1, name="has space")
    with pytest.raises(ValueError, match="type 'object'"):
        Tool("t", "d", {"type": "string"}, lambda: 1)
    with pytest.raises(ValueError, match="invalid parameters schema"):
        Tool("t", "d", {"type": "object", "properties": {"a": {"type": "nope"}}}, lambda: 1)
    with pytest.raises(ValueError, match="timeout_seconds must be positive"):
        make_tool(lambda: 1, timeout=0)
    assert len(registry) == 1 and "probe" in registry
    assert registry.get("probe") is registry.tools[0]
    assert registry.get("missing") is None


def test_describe_uses_the_openai_function_shape() -> None:
    registry = default_registry()
    described = registry.describe(["calculator"])
    assert described == [
        {
            "type": "function",
            "function": {
                "name": "calculator",
                "description": registry.tools[1].description,
                "parameters": registry.tools[1].parameters,
            },
        }
    ]
    assert [d["function"]["name"] for d in registry.describe()] == [
        "get_datetime",
        "calculator",
        "convert_units",
    ]
    with pytest.raises(KeyError, match="unknown tool 'nope'"):
        registry.describe(["nope"])


async def test_call_runs_a_tool_and_measures_it() -> None:
    clock = ManualClock()

    async def slow_double(n: int) -> int:
        clock.advance(0.05)  # the tool's work takes 50 ms on the registry's clock
        return 2 * n

    schema: dict[str, Any] = {"properties": {"n": {"type": "integer"}}, "required": ["n"]}
    registry = ToolRegistry([make_tool(slow_double, **schema)], clock)
    result = await registry.call("probe", {"n": 21})
    assert result.success and result.error is None
    assert result.result == 42
    assert result.tool_name == "probe" and result.arguments == {"n": 21}
    assert result.duration_ms == pytest.approx(50.0)
    again = await registry.call("probe", '{"n": 4}')  # JSON text, as LLMs send it
    assert again.result == 8
    assert again.call_id != result.call_id


async def test_call_unknown_tool() -> None:
    result = await default_registry().call("launch_rockets", {})
    assert not result.success
    assert result.tool_name == "launch_rockets"
    assert result.error is not None and "unknown tool 'launch_rockets'" in result.error
    assert "calculator" in result.error


@pytest.mark.parametrize(
    ("name", "arguments", "fragments"),
    [
        ("calculator", {}, ["'expression' is a required property"]),
        ("calculator", {"expression": 17}, ["expression", "17 is not of type 'string'"]),
        ("calculator", {"expression": "1", "extra": 1}, ["'extra' was unexpected"]),
        ("convert_units", {"value": "five", "from_unit": "mi", "to_unit": "km"}, ["value"]),
        ("get_datetime", {"timezone": ""}, ["timezone", "should be non-empty"]),
        ("search_memory", {"query": "x", "limit": 11}, ["limit", "maximum of 10"]),
        ("search_memory", {"query": "x", "limit": True}, ["limit", "not of type 'integer'"]),
        ("calculator", "[1, 2]", ["arguments must be an object, got list"]),
        ("calculator", "{not json", ["arguments are not valid JSON"]),
    ],
)
async def test_call_rejects_invalid_arguments(
    name: str, arguments: Any, fragments: list[str]
) -> None:
    registry = default_registry(memory_search=remember)
    result = await registry.call(name, arguments)
    assert not result.success and result.result is None
    assert result.error is not None
    for fragment in fragments:
        assert fragment in result.error


async def test_call_reports_the_exception_a_tool_raised() -> None:
    def broken() -> None:
        raise RuntimeError("the flux capacitor is empty")

    result = await ToolRegistry([make_tool(broken)]).call("probe")
    assert not result.success
    assert result.error is not None
    assert "RuntimeError" in result.error and "the flux capacitor is empty" in result.error


async def test_call_times_out_an_async_tool() -> None:
    """The timeout runs on a manual clock: the call gives up when 0.2 s have passed on it,
    and the stalled tool is cancelled, however fast or slow the machine."""
    cancelled = asyncio.Event()

    async def stalls() -> str:
        try:
            await asyncio.Event().wait()  # never set: only the timeout ends this call
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    clock = ManualClock()
    registry = ToolRegistry([make_tool(stalls, timeout=0.2)], clock)
    calling = asyncio.create_task(registry.call("probe", {}))
    await asyncio.wait_for(clock.sleeping(0.2), HANG_GUARD_SECONDS)  # the timeout is armed
    assert not calling.done()
    clock.advance(0.2)
    result = await asyncio.wait_for(calling, HANG_GUARD_SECONDS)
    assert cancelled.is_set()
    assert not result.success
    assert result.error is not None and "timed out" in result.error and "0.2" in result.error
    assert result.duration_ms == pytest.approx(200.0)  # on the registry's clock


async def test_call_times_out_a_sync_tool_without_blocking() -> None:
    """A sync tool stuck in its thread: the call still times out, the loop free throughout."""
    release = threading.Event()

    def stuck() -> str:
        release.wait(HANG_GUARD_SECONDS)  # released by the test, once the call has given up
        return "late"

    clock = ManualClock()
    registry = ToolRegistry([make_tool(stuck, timeout=0.2)], clock)
    try:
        calling = asyncio.create_task(registry.call("probe"))
        await asyncio.wait_for(clock.sleeping(0.2), HANG_GUARD_SECONDS)
        clock.advance(0.2)
        result = await asyncio.wait_for(calling, HANG_GUARD_SECONDS)
        assert not release.is_set()  # the tool is still stuck: the call did not wait for it
        assert not result.success and result.error is not None and "timed out" in result.error
    finally:
        release.set()


async def test_sync_tools_run_off_the_event_loop_thread() -> None:
    """The tool returns only once the event loop has run while it was inside its call:
    on the loop's own thread it would wait for that in vain."""
    seen: list[int] = []
    loop = asyncio.get_running_loop()
    inside = asyncio.Event()
    loop_ran = threading.Event()

    def blocking() -> str:
        seen.append(threading.get_ident())
        loop.call_soon_threadsafe(inside.set)
        return "done" if loop_ran.wait(HANG_GUARD_SECONDS) else "the loop never ran"

    # A clock at rest: no timeout can cut the call short, however slow the machine.
    calling = asyncio.create_task(ToolRegistry([make_tool(blocking)], ManualClock()).call("probe"))
    await asyncio.wait_for(inside.wait(), HANG_GUARD_SECONDS)  # the loop runs; the tool waits
    loop_ran.set()
    result = await asyncio.wait_for(calling, HANG_GUARD_SECONDS)
    assert result.success and result.result == "done"
    assert seen and seen[0] != threading.get_ident()


async def test_async_tools_and_async_callables_run_on_the_loop() -> None:
    class Probe:
        async def __call__(self) -> int:
            return threading.get_ident()

    async def where() -> int:
        return threading.get_ident()

    registry = ToolRegistry([make_tool(where), make_tool(Probe(), name="probe_object")])
    assert (await registry.call("probe")).result == threading.get_ident()
    assert (await registry.call("probe_object")).result == threading.get_ident()


async def test_cancelling_a_call_propagates() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def waits() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    registry = ToolRegistry([make_tool(waits)], ManualClock())
    task = asyncio.create_task(registry.call("probe"))
    await asyncio.wait_for(started.wait(), HANG_GUARD_SECONDS)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()  # the tool itself was cancelled, not left running


# --- built-in tools through the registry ------------------------------------------------


MEMORIES = [
    {"text": "The user's sister is called Ana.", "when": "2026-01-02"},
    {"text": "The user's sister lives in Lisbon.", "when": "2026-02-03"},
    {"text": "The user likes green tea.", "when": "2026-03-04"},
]


async def remember(query: str, limit: int) -> list[dict[str, Any]]:
    words = query.lower().split()
    return [m for m in MEMORIES if any(w in m["text"].lower() for w in words)][:limit]


def test_builtin_tools_have_descriptions_and_keywords() -> None:
    tools = builtin_tools(memory_search=remember)
    assert [t.name for t in tools] == [
        "get_datetime",
        "calculator",
        "convert_units",
        "search_memory",
    ]
    for tool in tools:
        assert len(tool.description) > 20 and len(tool.keywords) >= 5
    assert {"calculate", "times", "percent", "square root"} <= set(tools[1].keywords)
    assert {"time", "date", "today"} <= set(tools[0].keywords)
    assert {"convert", "miles", "celsius"} <= set(tools[2].keywords)


async def test_calculator_tool() -> None:
    registry = default_registry()
    result = await registry.call("calculator", {"expression": "17 * 23"})
    assert result.success and result.result["result"] == 391
    spoken = await registry.call("calculator", {"expression": "fifteen percent of eighty"})
    assert spoken.result["expression"] == "15 / 100 * 80" and spoken.result["result"] == 12
    evil = await registry.call("calculator", {"expression": "__import__('os').system('ls')"})
    assert not evil.success and evil.error is not None and "only calls to" in evil.error
    power = await registry.call("calculator", {"expression": "9**9**9"})
    assert not power.success and power.error is not None and "too large" in power.error


async def test_convert_units_tool() -> None:
    registry = default_registry()
    result = await registry.call(
        "convert_units", {"value": 5, "from_unit": "miles", "to_unit": "kilometers"}
    )
    assert result.success, result.error
    assert result.result["value"] == pytest.approx(8.05, abs=0.01)
    hot = await registry.call(
        "convert_units", {"value": 100, "from_unit": "celsius", "to_unit": "fahrenheit"}
    )
    assert hot.result["value"] == 212
    wrong = await registry.call(
        "convert_units", {"value": 3, "from_unit": "liters", "to_unit": "meters"}
    )
    assert not wrong.success and wrong.error is not None
    assert "cannot convert 'liters' to 'meters'" in wrong.error


async def test_get_datetime_tool() -> None:
    registry = default_registry()
    zone = ZoneInfo("Europe/London")
    before = datetime.now(zone)
    result = await registry.call("get_datetime", {"timezone": "Europe/London"})
    after = datetime.now(zone)
    assert result.success, result.error
    assert before.replace(microsecond=0) <= datetime.fromisoformat(result.result["iso"]) <= after
    bogus = await registry.call("get_datetime", {"timezone": "Atlantis/Capital"})
    assert not bogus.success and bogus.error is not None
    assert "unknown time zone 'Atlantis/Capital'" in bogus.error


async def test_search_memory_tool_only_with_a_search_function() -> None:
    assert default_registry().get("search_memory") is None
    registry = default_registry(memory_search=remember)
    result = await registry.call("search_memory", {"query": "sister", "limit": 1})
    assert result.success, result.error
    assert result.result == {"query": "sister", "results": [MEMORIES[0]]}
    both = await registry.call("search_memory", {"query": "sister"})
    assert [m["when"] for m in both.result["results"]] == ["2026-01-02", "2026-02-03"]
