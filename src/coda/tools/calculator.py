"""Safe arithmetic: an AST walker (no eval) and a parser for spoken arithmetic."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

Number = int | float

MAX_LENGTH = 200
"""Longest expression accepted, in characters."""
MAX_DEPTH = 50
"""Deepest nesting of operations accepted."""
MAX_EXPONENT = 100
"""Largest exponent size accepted by ``**``."""
MAX_MAGNITUDE = 10**100
"""Largest size of any intermediate or final result."""
SIGNIFICANT_DIGITS = 10
"""Float results are rounded to this many significant digits."""

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
_ALLOWED_NODES = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.UnaryOp,
    ast.BinOp,
    ast.Call,
    ast.Pow,
    *_BINARY,
    *_UNARY,
)
_NOT_ALLOWED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access is",
    ast.Subscript: "subscripts are",
    ast.Slice: "slices are",
    ast.Lambda: "lambdas are",
    ast.ListComp: "comprehensions are",
    ast.SetComp: "comprehensions are",
    ast.DictComp: "comprehensions are",
    ast.GeneratorExp: "comprehensions are",
    ast.List: "lists are",
    ast.Tuple: "tuples are",
    ast.Set: "sets are",
    ast.Dict: "dictionaries are",
    ast.JoinedStr: "strings are",
    ast.Compare: "comparisons are",
    ast.BoolOp: "boolean operators are",
    ast.IfExp: "conditional expressions are",
    ast.NamedExpr: "assignments are",
    ast.Starred: "starred arguments are",
    ast.keyword: "keyword arguments are",
    ast.Await: "await is",
    ast.Not: "'not' is",
    ast.Invert: "the ~ operator is",
    ast.LShift: "the << operator is",
    ast.RShift: "the >> operator is",
    ast.BitAnd: "the & operator is",
    ast.BitOr: "the | operator is",
    ast.MatMult: "the @ operator is",
}


def evaluate(expression: str) -> Number:
    """Evaluate arithmetic such as ``"(2 + 3) * sqrt(16) / 2"`` without ``eval``.

    Allowed: int and float literals, ``+ - * / // % **`` (``^`` means ``**``), unary
    ``+``/``-``, parentheses, ``sqrt``, ``abs``, ``round`` and the constants ``pi`` and ``e``.

    Returns:
        An int when the result is an exact whole number, else a float rounded to
        ``SIGNIFICANT_DIGITS`` significant digits.

    Raises:
        ValueError: If the expression is invalid, uses anything not allowed, or is too
            long, too deep, or too large to compute (see the module's limits).
    """
    if not isinstance(expression, str):
        raise ValueError(f"expression must be a string, got {type(expression).__name__}")
    text = expression.strip()
    if not text:
        raise ValueError("expression is empty")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"expression is too long ({len(text)} characters; at most {MAX_LENGTH})")
    text = text.replace("^", "**").replace("×", "*").replace("÷", "/")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a valid arithmetic expression: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ValueError(f"not a valid arithmetic expression: {exc}") from None
    _check_nodes(tree)
    return _tidy(_eval(tree.body, 1))


def _check_nodes(tree: ast.AST) -> None:
    """Reject any node that is not plain arithmetic, before anything is computed."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{_literal_kind(value)} not allowed")
        elif isinstance(node, ast.Name):
            if node.id not in _CONSTANTS and node.id not in _FUNCTIONS:
                raise ValueError(f"name {node.id!r} is not allowed (only pi and e)")
        elif isinstance(node, ast.Call):
            _check_call(node)
        elif not isinstance(node, _ALLOWED_NODES):
            what = _NOT_ALLOWED.get(type(node), f"{type(node).__name__} expressions are")
            raise ValueError(f"{what} not allowed")


def _literal_kind(value: object) -> str:
    """How a disallowed literal is named in an error, with its verb."""
    if isinstance(value, str | bytes):
        return "strings are"
    if isinstance(value, bool):
        return "booleans are"
    if isinstance(value, complex):
        return "complex numbers are"
    return f"{value!r} is"


def _check_call(node: ast.Call) -> None:
    """Reject calls other than ``sqrt``, ``abs`` or ``round`` with positional arguments."""
    allowed = ", ".join(_FUNCTIONS)
    if not isinstance(node.func, ast.Name):
        raise ValueError(f"only calls to {allowed} are allowed")
    name = node.func.id
    if name not in _FUNCTIONS:
        raise ValueError(f"calls to {name!r} are not allowed (only {allowed})")
    if node.keywords:
        raise ValueError("keyword arguments are not allowed")
    low, high = _ARITY[name]
    if not low <= len(node.args) <= high:
        expected = str(low) if low == high else f"{low} or {high}"
        raise ValueError(f"{name} takes {expected} argument(s), got {len(node.args)}")


def _eval(node: ast.expr, depth: int) -> Number:
    """The value of a node that ``_check_nodes`` accepted."""
    if depth > MAX_DEPTH:
        raise ValueError(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ValueError(f"{_literal_kind(node.value)} not allowed")
        return _checked(node.value)
    if isinstance(node, ast.Name):
        if node.id not in _CONSTANTS:
            raise ValueError(f"{node.id} is a function; call it, e.g. {node.id}(4)")
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, depth + 1))
    if isinstance(node, ast.BinOp):
        left = _eval(node.left, depth + 1)
        right = _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        try:
            return _checked(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ValueError("division by zero") from None
        except OverflowError:
            raise ValueError("result is too large") from None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        args = [_eval(arg, depth + 1) for arg in node.args]
        return _checked(_FUNCTIONS[node.func.id](*args))
    raise ValueError(f"{type(node).__name__} expressions are not allowed")


def _power(base: Number, exponent: Number) -> Number:
    """``base ** exponent`` within the exponent and magnitude limits."""
    if abs(exponent) > MAX_EXPONENT:
        shown = str(exponent) if abs(exponent) < 10**12 else f"{exponent:.3g}"
        raise ValueError(f"exponent {shown} is too large (at most {MAX_EXPONENT} in size)")
    if base == 0 and exponent < 0:
        raise ValueError("division by zero")
    if base != 0 and exponent * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE):
        raise ValueError("result is too large (more than 10**100)")
    try:
        result = base**exponent
    except OverflowError:
        raise ValueError("result is too large") from None
    if isinstance(result, complex):
        raise ValueError("result is not a real number")
    return _checked(result)


def _checked(value: Number) -> Number:
    """``value`` itself, once it is known to be finite and within ``MAX_MAGNITUDE``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("result is too large or undefined")
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError("result is too large (more than 10**100)")
    return value


def _tidy(value: Number) -> Number:
    """An int when exact, else the float rounded to ``SIGNIFICANT_DIGITS`` digits."""
    if isinstance(value, int):
        return value
    rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if rounded.is_integer() and abs(rounded) < 10**15:
        return int(rounded)
    return rounded


def _sqrt(value: Number) -> Number:
    """Square root; exact for perfect-square ints."""
    if value < 0:
        raise ValueError("square root of a negative number")
    if isinstance(value, int):
        root = math.isqrt(value)
        if root * root == value:
            return root
    return math.sqrt(value)


def _round(value: Number, digits: Number = 0) -> Number:
    """``round`` with a bounded, whole number of digits."""
    if not isinstance(digits, int) or abs(digits) > 15:
        raise ValueError("round's digits must be a whole number from -15 to 15")
    return round(value) if digits == 0 else round(value, digits)


def _abs(value: Number) -> Number:
    """Absolute value."""
    return abs(value)


_FUNCTIONS: dict[str, Callable[..., Number]] = {"sqrt": _sqrt, "abs": _abs, "round": _round}
_ARITY: dict[str, tuple[int, int]] = {"sqrt": (1, 1), "abs": (1, 1), "round": (1, 2)}

# --- spoken arithmetic -----------------------------------------------------------------

_SMALL_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "  # noqa: SIM905
    "fifteen sixteen seventeen eighteen nineteen".split()
)
_TENS_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety".split()  # noqa: SIM905
_SMALL = {word: value for value, word in enumerate(_SMALL_WORDS)}
_TENS = {word: 10 * value for value, word in enumerate(_TENS_WORDS, 2)}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}
_OPERATOR_WORDS = {
    "plus": "+",
    "+": "+",
    "minus": "-",
    "-": "-",
    "times": "*",
    "x": "*",
    "*": "*",
    "×": "*",
    "over": "/",
    "/": "/",
    "÷": "/",
    "mod": "%",
    "modulo": "%",
    "**": "**",
    "^": "**",
}
_POSTFIX = {"squared": ["**", "2"], "cubed": ["**", "3"]}
_FILLER = frozenset(
    "what is whats calculate compute evaluate how much the please equals equal to tell me "  # noqa: SIM905
    "can you could would a an of and does do make makes hey answer result".split()
)
_PHRASES = [
    (re.compile(r"\bwhat'?s\b"), " what is "),
    (re.compile(r"\bdivided\s+by\b"), " / "),
    (re.compile(r"\bmultiplied\s+by\b"), " * "),
    (re.compile(r"\b(?:raised\s+)?to\s+the\s+power\s+of\b"), " ** "),
    (re.compile(r"\bsquare\s+root(?:\s+of)?\b"), " sqrt "),
    (re.compile(r"\bper\s*cent\b|%"), " percent "),
    (re.compile(r"(?<=[a-z])-(?=[a-z])"), " "),
    (re.compile(r"(?<=\d),(?=\d{3}\b)"), ""),
]
_TOKEN = re.compile(
    r"(?P<tok>\d+(?:\.\d+)?|\.\d+|\*\*|[a-z]+|[-+*/^()×÷])|(?P<skip>[\s?!.,;:'\"=])|(?P<bad>.)"
)
_DIGITS = re.compile(r"\d+(?:\.\d+)?|\.\d+")


def spoken_to_expression(text: str) -> str | None:
    """Turn spoken arithmetic into an expression for ``evaluate``.

    Examples: "what is 17 times 23" → "17 * 23", "twelve plus five" → "12 + 5",
    "square root of 16" → "sqrt(16)", "15 percent of 80" → "15 / 100 * 80".

    Returns:
        The expression, or None when ``text`` is not recognisable arithmetic.
    """
    tokens = _tokenize(text)
    if tokens is None:
        return None
    out: list[str] = []
    roots = 0  # pending "square root of" waiting for their operand
    has_operation = False
    i = 0
    while i < len(tokens):
        number = _read_number(tokens, i)
        if number is not None:
            value, i = number
            out.append("sqrt(" * roots + _format(value) + ")" * roots)
            roots = 0
            continue
        token = tokens[i]
        i += 1
        if token in _FILLER:
            continue
        if roots and token not in ("sqrt", "(", "pi"):
            return None
        has_operation = has_operation or token not in ("(", ")", "pi", "negative")
        if token == "pi":
            out.append("sqrt(" * roots + "pi" + ")" * roots)
            roots = 0
        elif token in _OPERATOR_WORDS:
            out.append(_OPERATOR_WORDS[token])
        elif token == "negative":
            out.append("-")
        elif token == "sqrt":
            roots += 1
        elif token == "(":
            if roots > 1:
                return None
            out.extend(["sqrt", "("] if roots else ["("])
            roots = 0
        elif token == ")":
            out.append(")")
        elif token in _POSTFIX:
            out.extend(_POSTFIX[token])
        elif token == "percent":
            of = i < len(tokens) and tokens[i] == "of"
            out.extend(["/", "100", "*"] if of else ["/", "100"])
            i += 1 if of else 0
        else:
            return None
    if roots or not has_operation or not out:
        return None
    expression = " ".join(out)
    try:
        ast.parse(expression, mode="eval")
    except SyntaxError:
        return None
    return expression


def _tokenize(text: str) -> list[str] | None:
    """Lower-case words, numbers and operator symbols; None on an unexpected character."""
    if not isinstance(text, str) or len(text) > 4 * MAX_LENGTH:
        return None
    lowered = text.lower().replace("’", "'")
    for pattern, replacement in _PHRASES:
        lowered = pattern.sub(replacement, lowered)
    tokens = []
    for match in _TOKEN.finditer(lowered):
        if match.group("bad") is not None:
            return None
        if match.group("tok") is not None:
            tokens.append(match.group("tok"))
    return tokens


def _read_number(tokens: list[str], start: int) -> tuple[Number, int] | None:
    """The number written at ``tokens[start:]`` (digits and/or words), and the next index."""
    total: Number = 0
    current: Number = 0
    last: str | None = None  # kind of the previous token in this number
    i = start
    while i < len(tokens):
        token = tokens[i]
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        if _DIGITS.fullmatch(token) and last is None:
            current, last = (float(token) if "." in token else int(token)), "digits"
        elif (
            token in _SMALL
            and last not in ("digits", "unit")
            and not (last == "tens" and _SMALL[token] >= 10)
        ):
            current += _SMALL[token]
            last = "unit"
        elif token in _TENS and last in (None, "hundred", "scale"):
            current += _TENS[token]
            last = "tens"
        elif token == "hundred" and last in ("digits", "unit", "tens"):
            current *= 100
            last = "hundred"
        elif token in _SCALES and last in ("digits", "unit", "tens", "hundred"):
            total += current * _SCALES[token]
            current, last = 0, "scale"
        elif token == "a" and last is None and (after == "hundred" or after in _SCALES):
            current, last = 1, "unit"
        elif (
            token == "and" and last in ("hundred", "scale") and (after in _SMALL or after in _TENS)
        ):
            pass
        elif token == "point" and last in ("unit", "tens") and isinstance(current, int):
            fraction, end = _read_digits(tokens, i + 1)
            if not fraction:
                break
            return total + current + float("0." + fraction), end
        else:
            break
        i += 1
    if last is None:
        return None
    return total + current, i


def _read_digits(tokens: list[str], start: int) -> tuple[str, int]:
    """Digits spoken one by one after "point" ("three point one four"), and the next index."""
    if start < len(tokens) and tokens[start].isdigit():
        return tokens[start], start + 1
    digits = ""
    i = start
    while i < len(tokens) and _SMALL.get(tokens[i], 10) < 10:
        digits += str(_SMALL[tokens[i]])
        i += 1
    return digits, i


def _format(value: Number) -> str:
    """A number as expression text."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)
