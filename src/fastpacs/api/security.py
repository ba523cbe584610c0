"""Access control in front of every route: RemoteAccessAllowed and HTTP Basic authentication.

As in Orthanc: with ``RemoteAccessAllowed`` false only loopback clients are
served; with authentication on, every request needs the credentials of one
of ``RegisteredUsers``.
"""

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from functools import lru_cache

from litestar import Litestar
from litestar.types import ASGIApp, Receive, Scope, Send

from fastpacs.config import Config

REALM = "Orthanc Secure Area"


@lru_cache(maxsize=1024)
def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credentials_valid(header: bytes | None, users: dict[str, str]) -> bool:
    if header is None or not header.startswith(b"Basic "):
        return False
    try:
        username, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = users.get(username)
    return expected is not None and hmac.compare_digest(expected.encode(), password.encode())


class AccessPolicy:
    """Who is served, from ``RemoteAccessAllowed`` and ``RegisteredUsers``."""

    def __init__(self, config: Config):
        self.remote_allowed = config.remote_access_allowed
        self.users = config.registered_users if config.authentication_required else None
        self.serves_everyone = self.remote_allowed and self.users is None

    def refusal(self, scope: Scope) -> tuple[int, dict[str, str]] | None:
        """The status and headers that refuse this HTTP request, or ``None`` to serve it."""
        client = scope.get("client")
        if not self.remote_allowed and not (client and _is_loopback(client[0])):
            return 403, {}
        if self.users is not None:
            header = dict(scope["headers"]).get(b"authorization")
            if not _credentials_valid(header, self.users):
                return 401, {"WWW-Authenticate": f'Basic realm="{REALM}"'}
        return None


class AccessControl:
    """ASGI middleware applying the :class:`AccessPolicy` to every routed request.

    Requests the router answers itself (unknown route, wrong method) never reach
    a middleware: the error handlers of ``api/errors.py`` apply the policy to them.
    """

    def __init__(self, app: ASGIApp, config: Config):
        self.app = app
        self.policy = AccessPolicy(config)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The refusal, or the application's own call (no extra frame on the way to it)."""
        if scope["type"] == "http" and not self.policy.serves_everyone:
            refusal = self.policy.refusal(scope)
            if refusal is not None:
                return _answer(send, *refusal)
        return self.app(scope, receive, send)


async def _answer(send: Send, status: int, headers: dict[str, str]) -> None:
    encoded = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    encoded.append((b"content-length", b"0"))
    await send({"type": "http.response.start", "status": status, "headers": encoded})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def access_control_installer(config: Config) -> Callable[[Litestar], None]:
    """A start-up hook putting :class:`AccessControl` in front of the router (and of the fast lane),
    so that no answer, not even an unknown route's, is given to a client that may not ask."""

    def install(app: Litestar) -> None:
        app.asgi_handler = AccessControl(app.asgi_handler, config)

    return install
