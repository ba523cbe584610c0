"""HTTP conventions of Orthanc that sit in front of every route: method override, gzip compression.

* ``X-HTTP-Method-Override: PUT`` or ``DELETE`` (any case) turns a request
  of any method into that method, for clients that can only send GET and
  POST; any other value is an empty 400, as in Orthanc, and an empty one is
  ignored.
* A request body sent with ``Content-Encoding: gzip`` (an Orthanc peer with
  ``"Compress": true``) is inflated on its way in, in pieces, so that the
  upload size limit applies to the inflated bytes.
* With ``HttpCompressionEnabled`` (the default), an answer is gzipped when
  the client accepts gzip (``Accept-Encoding``), as Orthanc does, except
  small ones and ones already compressed. Measured on this (shared,
  loaded) machine with python-isal: the 24.9 KB /tags of CT_small takes
  58 µs at level 0 (→ 5.4 KB), 85 µs at level 1 (→ 4.7 KB), against
  680 µs with zlib's default level; the 600-byte answer of
  ``GET /instances/{id}`` takes 12-25 µs, a sizeable part of the request,
  and saves nothing on the wire since it fits one TCP segment either way
  (wrk, 16 connections: 3120 req/s without compression, 3275 with
  ``Accept-Encoding: gzip`` and the threshold below, i.e. no cost).
  Answers below :data:`MINIMUM_COMPRESSED_SIZE` (one segment) are
  therefore sent as they are, as are ZIP archives, JPEG, PNG and gzip
  bodies, and streamed answers (more than one body message).
* An answer sent before the request body was read to its end (413 for a
  body over ``MaximumUploadSize``, 401, 404...) says ``Connection: close``.
  Granian (hyper) cannot reuse such a connection: once the answer is
  written it discards what of the body has arrived and, if more is to come,
  closes the connection, even when the answer did not say so. A client
  that sent its next request on it would then see the connection closed
  without an answer (httpx: "Server disconnected without sending a
  response"); told, it opens a new connection instead.
* A body of announced length ends with its last byte. Granian hands every
  non-empty body on with ``more_body`` set, then says it ended in an empty
  message of its own, which costs the reader one more wait on Granian's
  thread (measured: 330 µs against 215 µs for a one-connection
  ``POST /tools/find``). Once ``Content-Length`` bytes are in, the message
  that brought the last of them says the body is complete, and Granian's
  empty one is not handed on.
"""

import zlib
from collections.abc import Awaitable, Callable

from isal import igzip
from litestar import Litestar
from litestar.types import ASGIApp, Message, Receive, Scope, Send

OVERRIDE_HEADER = b"x-http-method-override"
OVERRIDABLE = {b"PUT": "PUT", b"DELETE": "DELETE"}
INFLATED_PIECE = 1024 * 1024
"""Bytes of an inflated request body handed on at once (the body size limit counts them)."""
MINIMUM_COMPRESSED_SIZE = 1400
"""Bytes: about one TCP segment of payload on Ethernet."""
COMPRESSION_LEVEL = 0
"""isal's fastest level: the server is CPU-bound long before the network is."""
ALREADY_COMPRESSED = (b"application/zip", b"application/gzip", b"image/jpeg", b"image/png", b"image/jp2")


def _accepts_gzip(header: bytes) -> bool:
    """True when ``Accept-Encoding`` lists gzip (or ``*``) with a quality above zero."""
    return _accepts(header, (b"gzip", b"*"))


def accepts_deflate(header: bytes) -> bool:
    """True when ``Accept-Encoding`` names deflate with a quality above zero (``*`` is not enough).

    Orthanc 1.10.1 then sends an attachment it stores compressed as its zlib
    stream, ``Content-Encoding: deflate``, before gzip whatever the order;
    with ``HttpCompressionEnabled`` false it never does.
    """
    return _accepts(header, (b"deflate",))


def _accepts(header: bytes, codings: tuple[bytes, ...]) -> bool:
    for item in header.split(b","):
        coding, *parameters = (part.strip() for part in item.split(b";"))
        if coding.lower() not in codings:
            continue
        for parameter in parameters:
            name, _, value = parameter.partition(b"=")
            if name.strip().lower() == b"q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


async def _bad_request(send: Send) -> None:
    await send({"type": "http.response.start", "status": 400, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class HttpConventions:
    """ASGI middleware applying the method override, and compression when enabled."""

    def __init__(self, app: ASGIApp, compression_enabled: bool):
        self.app = app
        self.compression_enabled = compression_enabled

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The application's own call when no convention applies (most requests): no extra frame."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        accepts_gzip = gzipped = chunked = False
        length: int | None = 0
        override: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-encoding" and value.strip().lower() == b"gzip":
                gzipped = True
            elif name == OVERRIDE_HEADER and value.strip():  # an empty one is no override (Orthanc)
                override = value.strip().upper()
            elif name == b"accept-encoding" and self.compression_enabled:
                accepts_gzip = _accepts_gzip(value)
            elif name == b"content-length":
                length = int(value) if value.strip().isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
        if chunked or length != 0:
            body = _RequestBody(receive, send, None if chunked else length)
            receive, send = body.receive, body.send
        if override is not None:
            method = OVERRIDABLE.get(override)
            if method is None:
                return _bad_request(send)
            scope = {**scope, "method": method}
        if gzipped:
            scope = {**scope, "headers": _without_body_encoding(scope["headers"])}
            receive = _GunzipReceiver(receive).receive
        if accepts_gzip:
            send = _GzipSender(send).send
        return self.app(scope, receive, send)


def _without_body_encoding(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request headers once the body is inflated: its encoding and encoded length no longer apply."""
    return [(name, value) for name, value in headers if name not in (b"content-encoding", b"content-length")]


class _RequestBody:
    """The request body's reader: ends a body of known length at its last byte (see the module).

    It also adds ``Connection: close`` to an answer started before the body
    was read to its end.
    """

    __slots__ = ("_complete", "_ended_early", "_length", "_receive", "_received", "_send")

    def __init__(self, receive: Receive, send: Send, length: int | None):
        """``length``: the announced ``Content-Length``, ``None`` when unknown (chunked)."""
        self._receive = receive
        self._send = send
        self._length = length
        self._received = 0
        self._complete = False
        self._ended_early = False

    async def receive(self) -> Message:
        message = await self._receive()
        if self._ended_early and message["type"] == "http.request" and not message.get("body"):
            self._ended_early = False  # Granian's own end of the body, already told
            message = await self._receive()
        if self._complete or message["type"] != "http.request":
            self._complete = True
            return message
        self._received += len(message.get("body", b""))
        more = message.get("more_body", False)
        if more and self._length is not None and self._received >= self._length:
            message = {**message, "more_body": False}
            self._ended_early, more = True, False
        self._complete = not more
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and not self._complete:
            headers = list(message.get("headers", []))
            if all(name.lower() != b"connection" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await self._send(message)


class _GunzipReceiver:
    """Inflates a gzip request body as it arrives, at most :data:`INFLATED_PIECE` bytes at a time."""

    def __init__(self, receive: Receive):
        self._receive = receive
        self._inflater = zlib.decompressobj(wbits=31)
        self._pending = b""
        self._last = False
        self._ended = False

    async def receive(self) -> Message:
        while not self._pending and not self._last:
            message = await self._receive()
            if message["type"] != "http.request":
                return message
            self._last = not message.get("more_body", False)
            try:
                self._pending = self._inflater.decompress(message.get("body", b""), INFLATED_PIECE)
            except zlib.error:  # not gzip after all: the route sees a truncated body and refuses it
                self._pending, self._last = b"", True
        if self._pending:
            piece, self._pending = (
                self._pending,
                self._inflater.decompress(self._inflater.unconsumed_tail, INFLATED_PIECE),
            )
            more = bool(self._pending or self._inflater.unconsumed_tail) or not self._last
            self._ended = not more
            return {"type": "http.request", "body": piece, "more_body": more}
        if self._ended:  # what comes after the body (the disconnection)
            return await self._receive()
        self._ended = True
        return {"type": "http.request", "body": b"", "more_body": False}


def http_conventions_installer(compression_enabled: bool) -> Callable[[Litestar], None]:
    """A start-up hook putting :class:`HttpConventions` in front of the router.

    Litestar's own middleware runs after routing, too late to change the
    method a request is routed by; the hook wraps the application's ASGI
    handler instead, so that unknown routes and wrong methods (answered by
    the router) are compressed as well.
    """

    def install(app: Litestar) -> None:
        app.asgi_handler = HttpConventions(app.asgi_handler, compression_enabled)

    return install


class _GzipSender:
    """Holds the start of an answer until its body is known, then gzips the body if worth it."""

    def __init__(self, send: Send):
        self._send = send
        self._start: Message | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._start = message
            return
        if message["type"] != "http.response.body" or self._start is None:
            if self._start is not None:  # a body sent otherwise (pathsend): nothing to compress
                start, self._start = self._start, None
                await self._send(start)
            await self._send(message)
            return
        start, self._start = self._start, None
        body = message.get("body", b"")
        if message.get("more_body", False) or not self._worth_compressing(start, body):
            await self._send(start)
            await self._send(message)
            return
        compressed = igzip.compress(body, COMPRESSION_LEVEL)
        headers = [
            (name, value) for name, value in start.get("headers", []) if name.lower() != b"content-length"
        ]
        headers += [
            (b"content-encoding", b"gzip"),
            (b"content-length", str(len(compressed)).encode()),
            (b"vary", b"Accept-Encoding"),
        ]
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": compressed, "more_body": False})

    @staticmethod
    def _worth_compressing(start: Message, body: bytes) -> bool:
        if len(body) < MINIMUM_COMPRESSED_SIZE:
            return False
        for name, value in start.get("headers", []):
            lowered = name.lower()
            if lowered == b"content-encoding":
                return False
            if lowered == b"content-type" and value.lower().startswith(ALREADY_COMPRESSED):
                return False
        return True
