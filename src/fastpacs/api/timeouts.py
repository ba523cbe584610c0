"""Request bodies must keep arriving: a client that sends one byte a second is cut off.

Granian bounds the time to read a request's headers (``header_read_timeout``,
set by ``fastpacs serve`` from ``HttpRequestTimeout``) but not its body. A
body trickling in would hold its connection, its task and, for an upload,
its share of ``MaximumPendingIngestSize`` (so that a handful of slow clients
could turn every other upload away with 503) for as long as it liked.

So a body may take ``HttpRequestTimeout`` seconds, plus one second for
every :data:`MINIMUM_RATE` bytes received (the rule of Apache's
mod_reqtimeout): a client sending faster than that is never cut, a slower
one is answered 408 Request Timeout and its connection closed. Once the body
is complete, ``receive`` is passed through untouched (a streaming answer
waits on it for the client's disconnection).
"""

import asyncio

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from fastpacs.errors import BareHttpError

MINIMUM_RATE = 1024
"""Bytes per second below which a request body counts as stalled."""


class RequestBodyTimeout:
    """ASGI middleware bounding the time a request body may take to arrive."""

    def __init__(self, app: ASGIApp, timeout: float):
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout <= 0:
            await self.app(scope, receive, send)
            return
        await self.app(scope, BodyDeadline(receive, self.timeout), send)


class BodyDeadline:
    """``receive`` with a deadline that moves forward with the bytes received."""

    __slots__ = ("complete", "deadline", "receive")

    def __init__(self, receive: Receive, timeout: float):
        self.receive = receive
        self.deadline = asyncio.get_running_loop().time() + timeout
        self.complete = False

    async def __call__(self) -> Message:
        if self.complete:
            return await self.receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self.receive()
        except TimeoutError:
            raise BareHttpError(408, {"Connection": "close"}) from None
        if message["type"] == "http.request":
            self.deadline += len(message.get("body", b"")) / MINIMUM_RATE
            self.complete = not message.get("more_body", False)
        return message
