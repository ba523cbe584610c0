"""Values between JSON and Lua, converted as Orthanc 1.10.1 converts them.

Orthanc's rules, observed on the reference server (``DumpJson``, ``ParseJson``
and the arguments of the callbacks):

* JSON → Lua: every number becomes a Lua float (``ParseJson('[1]')[1]`` prints
  ``1.0``), ``null`` becomes ``nil`` (a hole in an array, a missing key in an
  object), arrays become tables indexed from 1.
* Lua → JSON: a table is an array when its keys, in the order ``next`` visits
  them, are 1, 2, 3... (compared as text, so ``{['1'] = 'a'}`` is ``["a"]``),
  and an object otherwise (keys as ``tostring`` writes them); an empty table is
  ``[]``. A number with an integral value that fits 32 bits is an integer,
  any other a double. Unless ``keep_strings`` is set, a string Lua reads as a
  number (``'12'``, ``' 0x10 '``) becomes that number. Functions and other
  values that have no JSON form become ``null``.
* JSON text is written compactly with sorted keys, non-ASCII characters as
  ``\\uXXXX`` escapes and doubles with 17 significant digits (JsonCpp's
  ``FastWriter``: ``0.1`` is ``0.10000000000000001``, an integral double gets
  ``.0``, infinity is ``1e+9999``, NaN ``null``).

Lua strings are bytes (the runtime is created without an encoding); text is
decoded as UTF-8 where JSON needs text.
"""

import json
import math
import re
from typing import Any

from lupa import lua53

LuaRuntime = lua53.LuaRuntime
MAX_DEPTH = 200
"""Deepest nesting converted; deeper (or self-referencing) tables are an error, not a crash."""
INT32 = range(-(2**31), 2**31)
_NUMBER_LIKE = re.compile(rb"\s*[-+.0-9]")
"""A first look at strings before asking Lua whether they are numbers (most tag values are not)."""


class ConversionError(ValueError):
    """A Lua value has no JSON form (a table key that is neither a string nor a number, too deep)."""


def to_lua(runtime: LuaRuntime, value: Any) -> Any:
    """A JSON value as the Lua value Orthanc gives scripts."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return runtime.table_from({index: to_lua(runtime, item) for index, item in enumerate(value, 1)})
    if isinstance(value, dict):
        return runtime.table_from({key.encode(): to_lua(runtime, item) for key, item in value.items()})
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def parse_json(runtime: LuaRuntime, text: bytes) -> Any:
    """``ParseJson``: the Lua value of a JSON text; ``None`` (nil) when it is not JSON."""
    try:
        document = json.loads(text.decode("utf-8", errors="replace"), parse_constant=_refuse_constant)
    except ValueError:
        return None
    return to_lua(runtime, document)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class LuaToJson:
    """Converts Lua values to JSON documents with Orthanc's rules (see the module docstring)."""

    def __init__(self, runtime: LuaRuntime):
        self.tonumber = runtime.eval("tonumber")
        self.tostring = runtime.eval("tostring")

    def convert(self, value: Any, keep_strings: bool, depth: int = 0) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return _number(value)
        if isinstance(value, bytes):
            if not keep_strings and _NUMBER_LIKE.match(value):
                number = self.tonumber(value)
                if number is not None:
                    return _number(number)
            return value.decode("utf-8", errors="replace")
        if lua53.lua_type(value) != "table":
            return None  # functions, coroutines: Orthanc writes null
        if depth >= MAX_DEPTH:
            raise ConversionError("table nested too deeply (or containing itself)")
        keys, items = [], []
        for key, item in value.items():
            keys.append(self._key(key))
            items.append(self.convert(item, keep_strings, depth + 1))
        if all(key == str(position) for position, key in enumerate(keys, 1)):
            return items
        return dict(zip(keys, items, strict=True))

    def _key(self, key: Any) -> str:
        if isinstance(key, bytes):
            return key.decode("utf-8", errors="replace")
        if isinstance(key, int | float) and not isinstance(key, bool):
            return self.tostring(key).decode()
        raise ConversionError("table keys must be strings or numbers to be written as JSON")


def _number(value: float) -> int | float:
    """Orthanc's numbers: integral values within 32 bits are integers, everything else a double."""
    number = float(value)
    if number.is_integer() and int(number) in INT32:
        return int(number)
    return number


def dump_json(document: Any) -> str:
    """JSON text as JsonCpp's ``FastWriter`` writes it (see the module docstring)."""
    parts: list[str] = []
    _write(document, parts)
    return "".join(parts)


def _write(value: Any, parts: list[str]) -> None:
    if isinstance(value, dict):
        parts.append("{")
        for position, key in enumerate(sorted(value)):
            if position:
                parts.append(",")
            parts.append(json.dumps(key))
            parts.append(":")
            _write(value[key], parts)
        parts.append("}")
    elif isinstance(value, list):
        parts.append("[")
        for position, item in enumerate(value):
            if position:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    elif isinstance(value, float):
        parts.append(_double(value))
    else:  # str, int, bool, None
        parts.append(json.dumps(value))


def _double(value: float) -> str:
    if math.isnan(value):
        return "null"
    if math.isinf(value):
        return "1e+9999" if value > 0 else "-1e+9999"
    text = format(value, ".17g")
    return text if any(mark in text for mark in ".e") else text + ".0"
