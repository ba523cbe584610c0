"""Requests of Lua scripts to fastpacs's own REST API, answered in this process.

``RestApiGet`` and its siblings do not go through a socket: the request is
handed to the ASGI application below the HTTP filters (the fast lane and the
router), as Orthanc calls its REST API directly. So, as in Orthanc, these
requests need no credentials and do not pass through
``IncomingHttpRequestFilter``, and instances they upload are recorded with
the ``Lua`` origin.
"""

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from litestar.types import ASGIApp, Message

from fastpacs.services.ingest import LUA_ORIGIN, forced_origin


@dataclass(frozen=True)
class RestAnswer:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status < 400


class InProcessRest:
    """Sends requests to the application's router, without HTTP."""

    def __init__(self, handler: ASGIApp, app: Any):
        self.handler = handler
        self.app = app

    async def request(
        self, method: str, uri: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> RestAnswer:
        path, _, query = uri.partition("?")
        encoded_headers = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
        encoded_headers.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": encoded_headers,
            "client": None,
            "server": None,
            "app": self.app,
            "litestar_app": self.app,
            "state": {},
        }
        request_sent = False
        answered = asyncio.Event()
        status = 500
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()  # a streamed answer listens for the client leaving: it never does
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    answered.set()

        token = forced_origin.set(LUA_ORIGIN)
        try:
            await self.handler(scope, receive, send)
        finally:
            forced_origin.reset(token)
        return RestAnswer(status, b"".join(chunks))
