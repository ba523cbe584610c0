"""JSON request bodies, read as Orthanc 1.10.1 reads them.

Orthanc parses bodies with JsonCpp's default reader, which is lenient where
strict JSON is not (observed on every JSON route, see
tests/differential/test_json_bodies_vs_orthanc.py):

- one UTF-8 byte-order mark (EF BB BF) before the document is skipped;
- ``//`` and ``/* */`` comments are allowed wherever whitespace is;
- a trailing comma before ``]`` or ``}`` is allowed;
- whatever follows the first complete value is ignored (``{...} xyz``);
- strings are not checked: invalid UTF-8 and raw control characters pass
  (fastpacs reads invalid UTF-8 as U+FFFD);
- but NaN, Infinity, single quotes, an empty body and a UTF-16 BOM are errors.

Every decode of a request body goes through :func:`read_json` so that all
routes agree. Strict JSON, the common case, is read by msgspec directly; only
a body msgspec refuses is rewritten to strict JSON (comments and trailing
commas dropped, strings repaired, the rest cut) and read again.

Orthanc crashes on deeply nested documents (a few hundred ``[``); fastpacs
refuses those beyond Python's recursion limit as not JSON. The rewrite is a
Python loop on the event loop: a body needing more than
:data:`LENIENT_TOKEN_LIMIT` tokens of it is refused rather than rewritten
(long strings are one token each, so a large ``Content`` is not affected).

This module sits next to :mod:`fastpacs.errors` because every layer that reads
a body (api/, net/, services/, dicom/) imports it.
"""

import re
from typing import Any

import msgspec

from fastpacs.errors import ErrorCode, OrthancError

UTF8_BOM = b"\xef\xbb\xbf"
LENIENT_TOKEN_LIMIT = 100_000
"""At most this many tokens of a body that is not strict JSON are rewritten (tens of milliseconds)."""

_TOKEN = re.compile(
    rb"""
      (?P<string>"[^"\\]*(?:\\.[^"\\]*)*")
    | (?P<comment>//[^\r\n]*|/\*.*?\*/)
    | (?P<space>[ \t\r\n]+)
    | (?P<open>[\[{])
    | (?P<close>[\]}])
    | (?P<comma>,)
    | (?P<number>[-+0-9][0-9]*(?:\.[0-9]*)?(?:[eE][-+]?[0-9]*)?)
    | (?P<other>true|false|null|:|.)
    """,
    re.DOTALL | re.VERBOSE,
)
"""JsonCpp's tokens: its numbers are lenient (``01``, ``+1``, ``1.``); ``other`` is also any stray byte."""
_CONTROL = re.compile(r"[\x00-\x1f]")


class NotJsonError(ValueError):
    """The body is not a JSON document, even as Orthanc's lenient reader reads them."""


def read_json(body: bytes) -> Any:
    """The JSON document of a request body; :class:`NotJsonError` when there is none."""
    if body.startswith(UTF8_BOM):
        body = body[3:]
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        pass
    except RecursionError:
        raise NotJsonError("nested too deeply") from None
    strict = _strict(body)
    try:
        return msgspec.json.decode(strict)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise NotJsonError("not a JSON document") from None


def json_body(body: bytes, code: ErrorCode = ErrorCode.BAD_FILE_FORMAT, details: str | None = None) -> Any:
    """The JSON document of a body; ``OrthancError(code, details)`` when there is none."""
    try:
        return read_json(body)
    except NotJsonError:
        raise OrthancError(code, details) from None


def json_object_body(
    body: bytes, code: ErrorCode = ErrorCode.BAD_FILE_FORMAT, details: str | None = None
) -> dict[str, Any]:
    """The JSON object of a body; ``OrthancError(code, details)`` for anything else, JSON or not."""
    document = json_body(body, code, details)
    if not isinstance(document, dict):
        raise OrthancError(code, details)
    return document


def _strict(body: bytes) -> bytes:
    """The first JSON value of a lenient body, rewritten as strict JSON (for msgspec to judge)."""
    parts: list[bytes] = []
    depth = 0
    for count, match in enumerate(_TOKEN.finditer(body)):
        if count == LENIENT_TOKEN_LIMIT:
            raise NotJsonError("too long to be read leniently")
        kind, token = match.lastgroup, match.group()
        if kind in ("comment", "space"):
            continue
        if kind == "close" and len(parts) > 1 and parts[-1] == b"," and parts[-2] not in (b"[", b"{"):
            parts.pop()  # the trailing comma JsonCpp allows (not alone: ``[,]`` stays an error)
        if kind == "string":
            token = _repaired_string(token)
        elif kind == "number":
            token = _strict_number(token)
        parts.append(token)
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
        if depth <= 0:
            break  # the root value is complete: JsonCpp ignores the rest
    return b"".join(parts)


def _repaired_string(token: bytes) -> bytes:
    """A string token with invalid UTF-8 replaced (U+FFFD) and raw control characters escaped."""
    text = token.decode("utf-8", errors="replace")
    return _CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text).encode()


def _strict_number(token: bytes) -> bytes:
    """A JsonCpp number in strict JSON (``01`` → ``1``, ``1.`` → ``1.0``); unchanged if not a number."""
    try:
        return str(int(token)).encode()
    except ValueError:
        pass
    try:
        return repr(float(token)).encode()
    except ValueError:
        return token
