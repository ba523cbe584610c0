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
        deadline = BodyDeadline(receive, self.timeout)
        try:
            await self.app(scope, deadline, send)
        finally:
            deadline.close()


class BodyDeadline:
    """``receive`` with a deadline that moves forward with the bytes received.

    One timer per body (a 525 KB upload arrives in about ten messages):
    entering ``asyncio.timeout_at`` for each message cost a timer, a context
    and a cancelled heap entry apiece. The timer is armed at the first
    message and, when it fires before the (since moved) deadline, armed
    again for it; at the deadline it cancels the task if it is waiting for
    the body, as ``asyncio.timeout`` would, or the next wait fails at once.
    The owner calls :meth:`close` when the request is over, for a body it
    did not read to its end.
    """

    __slots__ = ("_expired", "_task", "_timer", "_waiting", "complete", "deadline", "receive")

    def __init__(self, receive: Receive, timeout: float):
        self.receive = receive
        self.deadline = asyncio.get_running_loop().time() + timeout
        self.complete = False
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiting = False
        self._expired = False

    async def __call__(self) -> Message:
        if self.complete:
            return await self.receive()
        if self._expired:
            raise _timed_out()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(self.deadline, self._ring)
        cancelling = task.cancelling()
        self._waiting = True
        try:
            message = await self.receive()
        except asyncio.CancelledError:
            if self._expired and task.uncancel() <= cancelling:
                raise _timed_out() from None
            raise
        finally:
            self._waiting = False
        if message["type"] == "http.request":
            self.deadline += len(message.get("body", b"")) / MINIMUM_RATE
            self.complete = not message.get("more_body", False)
        else:  # the client left: there is no more body to wait for
            self.complete = True
        if self.complete:
            self._timer.cancel()
        return message

    def close(self) -> None:
        """The request is over: drop the timer of a body left unread (the answer did not need it all)."""
        if self._timer is not None:
            self._timer.cancel()
        self._task = None

    def _ring(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self.deadline:  # bytes came in since the timer was armed
            self._timer = loop.call_at(self.deadline, self._ring)
            return
        self._expired = True
        if self._waiting and self._task is not None:
            self._task.cancel()


def _timed_out() -> BareHttpError:
    return BareHttpError(408, {"Connection": "close"})
