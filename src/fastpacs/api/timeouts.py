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

The bodies being read are checked against their deadlines together, every
:data:`CHECK_SECONDS`, by one timer that runs only while some body is being
read: a timer armed and cancelled for every request cost about 40 µs of
latency per POST on this machine (a third of a small /tools/find answered
on one connection).
"""

import asyncio

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from fastpacs.errors import BareHttpError

MINIMUM_RATE = 1024
"""Bytes per second below which a request body counts as stalled."""
CHECK_SECONDS = 0.25
"""How often open bodies are checked against their deadlines: a stalled one is cut this late at most."""


class RequestBodyTimeout:
    """ASGI middleware bounding the time a request body may take to arrive."""

    def __init__(self, app: ASGIApp, timeout: float, deadlines: "BodyDeadlines"):
        self.app = app
        self.timeout = timeout
        self.deadlines = deadlines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout <= 0:
            await self.app(scope, receive, send)
            return
        deadline = BodyDeadline(receive, self.timeout, self.deadlines)
        try:
            await self.app(scope, deadline, send)
        finally:
            deadline.close()


class BodyDeadlines:
    """The bodies being read, checked against their deadlines by one timer of the running event loop.

    The timer runs while some body is open (every :data:`CHECK_SECONDS`)
    and stops when none is. One instance serves every request of the
    application (the router's middleware and the fast lane share it).
    """

    __slots__ = ("_open", "_timer")

    def __init__(self) -> None:
        self._open: set[BodyDeadline] = set()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """How many bodies are being read."""
        return len(self._open)

    def open(self, body: "BodyDeadline") -> None:
        self._open.add(body)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(CHECK_SECONDS, self._check)

    def close(self, body: "BodyDeadline") -> None:
        self._open.discard(body)

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for body in [body for body in self._open if body.deadline <= now]:
            self._open.discard(body)
            body.expire()
        self._timer = loop.call_later(CHECK_SECONDS, self._check) if self._open else None


class BodyDeadline:
    """``receive`` with a deadline that moves forward with the bytes received.

    The body is one of the open :class:`BodyDeadlines` from its first
    message on until it is complete (or the request is over: the owner calls
    :meth:`close` for a body it did not read to its end). Past the deadline
    the task is cancelled if it is waiting for the body, as
    ``asyncio.timeout`` would, or the next wait fails at once.
    """

    __slots__ = ("_deadlines", "_expired", "_task", "_waiting", "complete", "deadline", "receive")

    def __init__(self, receive: Receive, timeout: float, deadlines: BodyDeadlines):
        self.receive = receive
        self.deadline = asyncio.get_running_loop().time() + timeout
        self.complete = False
        self._deadlines = deadlines
        self._task: asyncio.Task[object] | None = None
        self._waiting = False
        self._expired = False

    async def __call__(self) -> Message:
        if self.complete:
            return await self.receive()
        if self._expired or asyncio.get_running_loop().time() >= self.deadline:
            raise _timed_out()
        task = asyncio.current_task()
        assert task is not None
        if self._task is None:
            self._deadlines.open(self)
        self._task = task
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
            self._deadlines.close(self)
        return message

    def close(self) -> None:
        """The request is over: a body left unread (the answer did not need it all) is checked no more."""
        self._deadlines.close(self)
        self._task = None

    def expire(self) -> None:
        """The deadline has passed: cut the wait for the body, or fail the next one."""
        self._expired = True
        if self._waiting and self._task is not None:
            self._task.cancel()


def _timed_out() -> BareHttpError:
    return BareHttpError(408, {"Connection": "close"})
