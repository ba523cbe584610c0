"""Fields of JSON request bodies, read as Orthanc reads them.

Orthanc checks the type of each field it reads and answers "Bad file format"
naming the field (``Boolean value expected in field: KeepSource``). Requests
that make jobs share ``Synchronous``/``Asynchronous`` and ``Priority``. Plain
Boolean texts (bodies of PUT /tools/metrics, query arguments) are ``true``,
``false``, ``1`` or ``0``, case-sensitive.
"""

from typing import Any, overload

from fastpacs.errors import ErrorCode, OrthancError


def boolean_field(document: dict[str, Any], name: str, default: bool) -> bool:
    value = document.get(name, default)
    if not isinstance(value, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Boolean value expected in field: {name}")
    return value


@overload
def integer_field(document: dict[str, Any], name: str, default: int) -> int: ...
@overload
def integer_field(document: dict[str, Any], name: str, default: None) -> int | None: ...
def integer_field(document: dict[str, Any], name: str, default: int | None) -> int | None:
    value = document.get(name, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Integer value expected in field: {name}")
    return value


def is_synchronous(document: dict[str, Any]) -> bool:
    """Orthanc's rule: ``Synchronous`` if given, else the opposite of ``Asynchronous``, else synchronous."""
    if "Synchronous" in document:
        return boolean_field(document, "Synchronous", True)
    return not boolean_field(document, "Asynchronous", False)


def priority_field(document: dict[str, Any]) -> int:
    return integer_field(document, "Priority", 0)


BOOLEAN_TEXTS = {"true": True, "1": True, "false": False, "0": False}


def boolean_text(text: str) -> bool | None:
    """``true``/``1`` or ``false``/``0`` as Orthanc reads a Boolean text; ``None`` for anything else."""
    return BOOLEAN_TEXTS.get(text)


def boolean_body(body: bytes) -> bool:
    """A Boolean request body (trimmed); "Boolean value expected" otherwise."""
    value = boolean_text(body.decode("utf-8", errors="replace").strip())
    if value is None:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Boolean value expected")
    return value
