"""A registry of callable tools: JSON-Schema validation, timeouts, and never-raising calls."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from coda.core.models import ToolResult
from coda.deadline import LOOP_CLOCK, Clock, within

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_ERRORS = 3


@dataclass(frozen=True)
class Tool:
    """One tool the assistant may call.

    Attributes:
        name: Unique name (letters, digits, ``_`` or ``-``; at most 64 characters).
        description: What the tool does, for the language model.
        parameters: JSON Schema (Draft 2020-12) of the arguments; its type is "object".
        run: Called as ``run(**arguments)``; sync callables run in a worker thread.
        keywords: Words that suggest the tool when they appear in an utterance.
        timeout_seconds: How long one call may take before it is abandoned.
        parse: Reads the arguments straight from an utterance, when its wording is
            unambiguous (None: it is not, and a language model must fill them in).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[..., Any]
    keywords: tuple[str, ...] = ()
    timeout_seconds: float = 2.0
    parse: Callable[[str], dict[str, Any] | None] | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"invalid tool name {self.name!r}: use 1-64 of [A-Za-z0-9_-]")
        if self.parameters.get("type") != "object":
            raise ValueError(f"tool {self.name!r}: parameters must be a schema of type 'object'")
        try:
            Draft202012Validator.check_schema(self.parameters)
        except SchemaError as exc:
            raise ValueError(
                f"tool {self.name!r}: invalid parameters schema: {exc.message}"
            ) from exc
        if not self.timeout_seconds > 0:
            raise ValueError(f"tool {self.name!r}: timeout_seconds must be positive")
        if not callable(self.run):
            raise ValueError(f"tool {self.name!r}: run must be callable")


class ToolRegistry:
    """Tools by name, described for a language model and called safely.

    Args:
        tools: The tools to register.
        clock: What each call's timeout and duration are measured on.
    """

    def __init__(self, tools: Iterable[Tool] = (), clock: Clock = LOOP_CLOCK) -> None:
        self.clock = clock
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        """Add ``tool``.

        Raises:
            ValueError: If a tool with the same name is already registered.
        """
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        self._validators[tool.name] = Draft202012Validator(tool.parameters)

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or None."""
        return self._tools.get(name)

    @property
    def tools(self) -> list[Tool]:
        """All tools, in registration order."""
        return list(self._tools.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def describe(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Tools in the OpenAI function-calling shape.

        Args:
            names: Which tools, in this order (None: all of them).

        Raises:
            KeyError: If a name is not registered.
        """
        chosen = list(self._tools) if names is None else list(names)
        described = []
        for name in chosen:
            tool = self._tools.get(name)
            if tool is None:
                raise KeyError(f"unknown tool {name!r}")
            function = {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            }
            described.append({"type": "function", "function": function})
        return described

    async def call(self, name: str, arguments: Mapping[str, Any] | str | None = None) -> ToolResult:
        """Validate ``arguments`` and run the tool ``name`` within its timeout.

        Never raises, except ``asyncio.CancelledError`` when the caller is cancelled:
        an unknown tool, invalid arguments, a timeout or an exception raised by the
        tool all come back as a ``ToolResult`` with ``success`` False and ``error`` set.
        A sync tool that times out keeps running in its thread; its result is dropped.

        Args:
            name: The tool's name.
            arguments: The arguments, as a mapping or a JSON object string (None: none).
        """
        start = self.clock.time()
        args, error = _parse_arguments(arguments)
        tool = self._tools.get(name)
        if tool is None:
            error = f"unknown tool {name!r}; available: {', '.join(self._tools) or 'none'}"
        elif error is None:
            error = self._validation_error(name, args)
        if tool is None or error is not None:
            return self._failure(name, args, error, start)
        try:
            value = await within(_invoke(tool.run, args), tool.timeout_seconds, self.clock)
        except TimeoutError:
            error = f"tool {name!r} timed out after {tool.timeout_seconds:g} s"
            return self._failure(name, args, error, start)
        except Exception as exc:
            error = f"tool {name!r} failed: {type(exc).__name__}: {exc}"
            return self._failure(name, args, error, start)
        return ToolResult(name, args, True, result=value, duration_ms=self._elapsed_ms(start))

    def _failure(
        self, name: str, args: dict[str, Any], error: str | None, start: float
    ) -> ToolResult:
        """A failed ``ToolResult``."""
        return ToolResult(name, args, False, error=error, duration_ms=self._elapsed_ms(start))

    def _elapsed_ms(self, start: float) -> float:
        """Milliseconds on the registry's clock since ``start`` (one of its readings)."""
        return (self.clock.time() - start) * 1000.0

    def _validation_error(self, name: str, args: dict[str, Any]) -> str | None:
        """Why ``args`` do not match the schema of tool ``name``, or None when they do."""
        try:
            errors = list(self._validators[name].iter_errors(args))
        except Exception as exc:  # e.g. RecursionError on absurdly nested arguments
            return f"invalid arguments for {name!r}: {type(exc).__name__}: {exc}"
        errors.sort(key=lambda e: [str(part) for part in e.path])
        if not errors:
            return None
        problems = []
        for err in errors[:_MAX_ERRORS]:
            where = "/".join(str(part) for part in err.absolute_path)
            problems.append(f"{where}: {err.message}" if where else err.message)
        more = f" (and {len(errors) - _MAX_ERRORS} more)" if len(errors) > _MAX_ERRORS else ""
        return f"invalid arguments for {name!r}: {'; '.join(problems)}{more}"


async def _invoke(run: Callable[..., Any], args: dict[str, Any]) -> Any:
    """Call ``run``: coroutine functions on the loop, anything else in a worker thread."""
    # type(run).__call__ covers callable objects whose __call__ is async
    if inspect.iscoroutinefunction(run) or inspect.iscoroutinefunction(type(run).__call__):
        value = run(**args)
    else:
        value = await asyncio.to_thread(run, **args)
    if inspect.isawaitable(value):
        value = await value
    return value


def _parse_arguments(
    arguments: Mapping[str, Any] | str | None,
) -> tuple[dict[str, Any], str | None]:
    """The arguments as a dict, and an error when they are not a JSON object."""
    if arguments is None:
        return {}, None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError) as exc:
            return {}, f"arguments are not valid JSON: {exc}"
    if not isinstance(arguments, Mapping):
        return {}, f"arguments must be an object, got {type(arguments).__name__}"
    return dict(arguments), None
