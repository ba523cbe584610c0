"""A bare ASGI application answering recorded responses: the stack's ceiling (:mod:`benchmarks.ceiling`).

It answers each GET with the status 200, headers and body recorded for its
path and query (a msgpack file named by ``CEILING_ANSWERS``), from memory, and does
nothing else: no routing, no index lookup, no file read, no logging. Served
by Granian as fastpacs is (one worker, uvloop), its rate is what the stack
allows for answers of those sizes on this machine.
"""

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

Answers = dict[tuple[str, bytes], tuple[list[tuple[bytes, bytes]], bytes]]
"""By path and query string."""
_NOT_FOUND = ([(b"content-length", b"0")], b"")


def _load(path: Path) -> Answers:
    """The recorded answers, by the path and query string of their URL."""
    answers: Answers = {}
    for url, (headers, body) in msgspec.msgpack.decode(path.read_bytes()).items():
        route, _, query = url.partition("?")
        answers[route, query.encode()] = ([(name, value) for name, value in headers], body)
    return answers


def create_app() -> Callable[[dict[str, Any], Any, Any], Awaitable[None]]:
    """The application (Granian's factory), answering what the file ``CEILING_ANSWERS`` names holds."""
    answers = _load(Path(os.environ["CEILING_ANSWERS"]))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        recorded = answers.get((scope["path"], scope["query_string"]))
        headers, body = recorded or _NOT_FOUND
        status = 404 if recorded is None else 200
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
