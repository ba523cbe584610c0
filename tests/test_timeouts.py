"""BodyDeadline in-process: one deadline per body, moved forward by the bytes received.

The servers' 408s (a body trickled a byte at a time, through the fast lane
and through the router) are in tests/test_limits.py; these tests pin the
deadlines' behaviour with short timeouts: a body that keeps pace is never
cut, one that stalls is cut at its deadline, the deadline counts the bytes
received, an outside cancellation stays a cancellation, and a complete body
or a finished request leaves nothing to check and no timer behind.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from litestar.types import Message

from fastpacs.api import timeouts
from fastpacs.api.timeouts import BodyDeadline, BodyDeadlines
from fastpacs.errors import BareHttpError

TIMEOUT = 0.3


def body_source(pieces: list[tuple[float, bytes]]) -> Callable[[], Awaitable[Message]]:
    """An ASGI ``receive`` giving each piece after its delay, the last one ending the body."""
    remaining = list(pieces)

    async def receive() -> Message:
        delay, body = remaining.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": body, "more_body": bool(remaining)}

    return receive


async def read_all(receive: Callable[[], Awaitable[Message]]) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message["body"])
        if not message["more_body"]:
            return b"".join(chunks)


def test_a_body_that_keeps_coming_is_read_whole_past_the_first_deadline() -> None:
    async def scenario() -> bytes:
        # 10 pieces 0.1 s apart: 1 s in all, well past TIMEOUT, each piece moving the deadline on.
        pieces = [(0.1, bytes(timeouts.MINIMUM_RATE)) for _ in range(10)]
        return await read_all(BodyDeadline(body_source(pieces), TIMEOUT, BodyDeadlines()))

    assert asyncio.run(scenario()) == bytes(10 * timeouts.MINIMUM_RATE)


def test_a_stalled_body_is_cut_at_its_deadline_with_408() -> None:
    async def scenario() -> float:
        pieces = [(0.05, b"x" * 10), (5.0, b"never")]
        started = time.monotonic()
        with pytest.raises(BareHttpError) as raised:
            await read_all(BodyDeadline(body_source(pieces), TIMEOUT, BodyDeadlines()))
        assert raised.value.http_status == 408
        assert raised.value.headers == {"Connection": "close"}
        return time.monotonic() - started

    elapsed = asyncio.run(scenario())
    # Cut at its deadline, long before the piece 5 s away; the margin is for a loaded CI machine.
    assert TIMEOUT <= elapsed < TIMEOUT + 2.0


def test_a_deadline_passed_while_not_reading_fails_the_next_read() -> None:
    async def scenario() -> None:
        receive = BodyDeadline(body_source([(0, b"a"), (0, b"b")]), TIMEOUT, BodyDeadlines())
        assert (await receive())["body"] == b"a"
        await asyncio.sleep(TIMEOUT + 0.1)  # the application busy elsewhere past the deadline
        with pytest.raises(BareHttpError):
            await receive()

    asyncio.run(scenario())


def test_an_outside_cancellation_stays_a_cancellation() -> None:
    async def scenario() -> None:
        body = BodyDeadline(body_source([(5.0, b"x")]), TIMEOUT, BodyDeadlines())
        reader = asyncio.create_task(read_all(body))
        await asyncio.sleep(0.05)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader

    asyncio.run(scenario())


def test_a_complete_body_leaves_no_timer_and_passes_receive_through() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        messages: list[Message] = [
            {"type": "http.request", "body": b"whole", "more_body": False},
            {"type": "http.disconnect"},
        ]

        async def connection() -> Message:
            return messages.pop(0)

        deadlines = BodyDeadlines()
        receive = BodyDeadline(connection, TIMEOUT, deadlines)
        assert (await receive())["body"] == b"whole"
        assert receive.complete
        assert len(deadlines) == 0
        await asyncio.sleep(timeouts.CHECK_SECONDS + 0.05)  # the check that found no body open
        assert [handle for handle in loop._scheduled if not handle.cancelled()] == []
        await asyncio.sleep(TIMEOUT + 0.1)
        # Passed through once complete, even past the deadline (a streamed answer waits for the client).
        assert (await receive())["type"] == "http.disconnect"

    asyncio.run(scenario())


def test_a_body_left_unread_leaves_no_timer_once_the_request_is_over() -> None:
    """A route may answer without reading the whole body: the middleware closes its deadline."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pieces = body_source([(0, b"first"), (5.0, b"never read")])

        async def answers_after_one_message(
            scope: object, receive: Callable[[], Awaitable[Message]], send: object
        ) -> None:
            assert (await receive())["body"] == b"first"

        deadlines = BodyDeadlines()
        middleware = timeouts.RequestBodyTimeout(answers_after_one_message, TIMEOUT, deadlines)  # type: ignore[arg-type]
        await middleware({"type": "http"}, pieces, None)  # type: ignore[arg-type]
        assert len(deadlines) == 0
        await asyncio.sleep(timeouts.CHECK_SECONDS + 0.05)
        assert [handle for handle in loop._scheduled if not handle.cancelled()] == []

    asyncio.run(scenario())
