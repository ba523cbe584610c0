"""Lua over HTTP: POST /tools/execute-script, and IncomingHttpRequestFilter in front of the router.

/tools/execute-script runs its body in the main Lua state and answers what
the script printed (``text/plain``); without ``ExecuteLuaEnabled`` it is an
empty 403, as in Orthanc. A script error is Orthanc's 500 "Cannot execute a
Lua command" (2031) with the Lua message as ``Details``.

:class:`LuaHttpFilter` asks the scripts' ``IncomingHttpRequestFilter``, when
they define one, about every HTTP request, after access control and before
the fast lane and the router; requests that Lua scripts make themselves
(``RestApiGet``...) do not go through it. Its start-up hook also hands the
Lua engine the handler those requests use.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable

from litestar import Litestar, Request, Response, post
from litestar.types import ASGIApp, Receive, Scope, Send

from fastpacs.api.errors import orthanc_error_response
from fastpacs.api.responses import text_response
from fastpacs.errors import BareHttpError, OrthancError
from fastpacs.lua.engine import LuaEngine
from fastpacs.lua.rest import InProcessRest
from fastpacs.services.registry import Services


@post("/tools/execute-script", name="tools-execute-script", status_code=200)
async def execute_script(request: Request, services: Services) -> Response[bytes]:
    if not services.config.execute_lua_enabled:
        raise BareHttpError(403)
    return text_response(await services.lua.execute(await request.body()))


LUA_HANDLERS = [execute_script]


def _username(scope: Scope) -> str:
    """The user of HTTP Basic credentials (already checked by access control), ``""`` without."""
    header = dict(scope["headers"]).get(b"authorization", b"")
    if not header.startswith(b"Basic "):
        return ""
    try:
        return base64.b64decode(header[6:], validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""


class LuaHttpFilter:
    """ASGI middleware: the requests ``IncomingHttpRequestFilter`` refuses get an empty 403."""

    def __init__(self, app: ASGIApp, engine: LuaEngine, authentication: bool):
        self.app = app
        self.engine = engine
        self.authentication = authentication

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The filtered request, or the application's own call when no script defines the filter."""
        if scope["type"] != "http" or "IncomingHttpRequestFilter" not in self.engine.defined:
            return self.app(scope, receive, send)
        return self._filtered(scope, receive, send)

    async def _filtered(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers[name.decode("latin-1")] = value.decode("latin-1")
        try:
            allowed = await self.engine.allow_http_request(
                scope["method"],
                scope["path"],
                client[0] if client else "",
                _username(scope) if self.authentication else "",
                headers,
            )
        except OrthancError as error:
            await self._error(scope, receive, send, error)
            return
        if not allowed:
            await _forbidden(send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _error(scope: Scope, receive: Receive, send: Send, error: OrthancError) -> None:
        request: Request = Request(scope, receive)
        response = orthanc_error_response(request, error)
        await response.to_asgi_response(request.app, request)(scope, receive, send)


async def _forbidden(send: Send) -> None:
    await send({"type": "http.response.start", "status": 403, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def lua_installer() -> Callable[[Litestar], Awaitable[None]]:
    """A start-up hook: the Lua engine's REST handler is the chain below this point (fast lane,
    router), and :class:`LuaHttpFilter` goes in front of it; then the scripts' ``Initialize()``."""

    async def install(app: Litestar) -> None:
        services: Services = app.state.services
        config = services.config
        rest = InProcessRest(app.asgi_handler, app)
        app.asgi_handler = LuaHttpFilter(app.asgi_handler, services.lua, config.authentication_required)
        await services.lua.connect(rest)

    return install
