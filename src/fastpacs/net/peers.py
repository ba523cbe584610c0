"""The HTTP client of Orthanc peers: requests to another Orthanc-compatible server's REST API.

One :class:`httpx.AsyncClient` per TLS identity (no client certificate, or
one per certificate file, key and password), created on first use and kept
until the server stops, so that connections to a peer are reused from one
request to the next and from one job to the next (a new one replaces it
when its certificate, key or CA file changes: a renewed certificate is
used without a restart). What differs between
peers sharing a TLS identity travels with each request: the URL, HTTP
Basic credentials, ``HttpHeaders`` and the timeout.

A request that could not reach the peer, or that the peer answers ``503``
(busy, as fastpacs answers when too many uploads are pending), is sent
again, at most :data:`RETRIES` times, after a pause (the ``Retry-After`` of
the answer when it gives one, capped). Timeouts are not retried: the peer
had the whole delay to answer. Repeating a request is safe for what peers
are asked: ``GET /system``, and ``POST /instances``, where storing an
instance twice answers ``AlreadyStored``.

Failures raise :class:`PeerError`, whose text says what went wrong and
with which peer; the services turn it into Orthanc's "Error in the network
protocol".
"""

import asyncio
import logging
import ssl
from dataclasses import dataclass
from http import HTTPStatus

import httpx

from fastpacs.config import OrthancPeer
from fastpacs.net.tls import files_stamp

logger = logging.getLogger(__name__)

RETRIES = 2
"""Times a request is sent again after a failure that may be transient."""
RETRY_PAUSE = 0.5
"""Seconds before the first retry; doubled for each further one."""
MAX_RETRY_AFTER = 10.0
"""Longest ``Retry-After`` (seconds) obeyed before retrying a ``503``."""
MAX_CONNECTIONS = 32
"""Connections a client keeps open at most (all peers of one TLS identity together)."""

_TRANSIENT = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, OSError)
"""Failures after which the request may not have reached the peer's application: worth retrying.

``RemoteProtocolError`` covers a kept-alive connection the peer closed just
as it was reused ("Server disconnected without sending a response").
``OSError``: httpx lets some socket and TLS errors through as they are (a
TLS 1.3 server refusing the client's certificate says so on the first
read). TLS failures are not retried (:func:`_is_tls_failure`)."""


class PeerError(Exception):
    """A request to a peer failed: it could not be sent, timed out, or got an error status."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status
        """The peer's HTTP status when it answered one."""


@dataclass(frozen=True)
class TlsIdentity:
    """How fastpacs authenticates itself over HTTPS: a client certificate, or none."""

    certificate_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None

    @classmethod
    def of(cls, peer: OrthancPeer) -> "TlsIdentity":
        if not peer.certificate_file:
            return cls()
        return cls(peer.certificate_file, peer.certificate_key_file or None, peer.certificate_key_password)


def peer_url(peer: OrthancPeer, path: str) -> str:
    """The URL of a route of the peer (its ``Url`` ends with ``/``)."""
    return peer.url + path.lstrip("/")


class PeerClient:
    """Sends requests to peers, with their credentials, headers, TLS identity and timeout."""

    def __init__(self, default_timeout: float, verify_peers: bool = True, ca_certificates: str = ""):
        self.default_timeout = default_timeout
        """Seconds for a peer whose ``Timeout`` is 0 (Orthanc's ``HttpTimeout``)."""
        self.verify_peers = verify_peers
        self.ca_certificates = ca_certificates
        self._clients: dict[TlsIdentity, tuple[httpx.AsyncClient, tuple[int, ...]]] = {}
        self._retired: list[httpx.AsyncClient] = []
        """Clients replaced after their files changed, closed at the end (requests may still use them)."""

    def _ssl_context(self, identity: TlsIdentity) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_certificates or None)
        if not self.verify_peers:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if identity.certificate_file:
            context.load_cert_chain(identity.certificate_file, identity.key_file, identity.key_password)
        return context

    def _files_stamp(self, identity: TlsIdentity) -> tuple[int, ...]:
        """When the files of a TLS context last changed: a renewed certificate needs a new context."""
        return files_stamp(self.ca_certificates, identity.certificate_file, identity.key_file)

    def _client(self, peer: OrthancPeer) -> httpx.AsyncClient:
        identity = TlsIdentity.of(peer)
        stamp = self._files_stamp(identity)
        cached = self._clients.get(identity)
        if cached is not None and cached[1] == stamp:
            return cached[0]
        try:
            context = self._ssl_context(identity)
        except (OSError, ssl.SSLError) as error:
            raise PeerError(f"Cannot use the TLS settings of the peer at {peer.url}: {error}") from error
        client = httpx.AsyncClient(
            verify=context,
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
            headers={"User-Agent": "fastpacs"},
        )
        if cached is not None:
            self._retired.append(cached[0])
        self._clients[identity] = (client, stamp)
        return client

    async def request(
        self,
        peer: OrthancPeer,
        method: str,
        path: str,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request to the peer: its answer if the status is below 400, :class:`PeerError` if not."""
        client = self._client(peer)
        url = peer_url(peer, path)
        auth = (peer.username, peer.password or "") if peer.username else None
        timeout = float(peer.timeout or self.default_timeout)
        attempt = 0
        while True:
            try:
                response = await client.request(
                    method,
                    url,
                    content=content,
                    headers={**peer.http_headers, **(headers or {})},
                    auth=auth,
                    timeout=timeout,
                )
            except httpx.TimeoutException as error:
                raise PeerError(f"Timeout after {timeout:g} s in {method} {url}") from error
            except _TRANSIENT as error:
                if attempt >= RETRIES or _is_tls_failure(error):
                    raise PeerError(
                        f"Cannot reach the peer: {method} {url} failed: {_reason(error)}"
                    ) from error
                pause = RETRY_PAUSE * 2**attempt
            except (httpx.HTTPError, httpx.InvalidURL) as error:
                raise PeerError(f"{method} {url} failed: {_reason(error)}") from error
            else:
                if response.status_code != HTTPStatus.SERVICE_UNAVAILABLE or attempt >= RETRIES:
                    return _checked(response, method, url)
                asked = _retry_after(response)
                pause = RETRY_PAUSE * 2**attempt if asked is None else asked
            attempt += 1
            logger.info("%s %s: retrying in %.1f s (attempt %d)", method, url, pause, attempt + 1)
            await asyncio.sleep(pause)

    async def close(self) -> None:
        """Close every connection (at server stop)."""
        clients = [client for client, _ in self._clients.values()] + self._retired
        self._clients, self._retired = {}, []
        for client in clients:
            await client.aclose()


def _checked(response: httpx.Response, method: str, url: str) -> httpx.Response:
    if response.status_code < 400:
        return response
    try:
        phrase = HTTPStatus(response.status_code).phrase
    except ValueError:
        phrase = "unknown status"
    raise PeerError(
        f"The peer answered HTTP status {response.status_code} ({phrase}) to {method} {url}",
        response.status_code,
    )


def _retry_after(response: httpx.Response) -> float | None:
    """The delay a ``503`` asks for (seconds form only), capped at :data:`MAX_RETRY_AFTER`."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _is_tls_failure(error: BaseException) -> bool:
    """Whether a connection failed in the TLS handshake (a certificate refused): retrying cannot help."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _reason(error: Exception) -> str:
    """What went wrong, without httpx's class names (some of its errors have no text)."""
    return str(error) or type(error).__name__
