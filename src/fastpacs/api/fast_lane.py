"""The fast lane: the hottest read routes answered in front of the router.

GET of a resource (``/patients|studies|series|instances/{id}``), of an
instance's stored tag JSON (``/tags`` in its three forms, ``/simplified-tags``),
of its file (``/instances/{id}/file``), the listings of a level
(``/studies``, ``?since&limit``, ``?expand``), ``POST /tools/find`` and the
uploads (``POST /instances``) make most of the traffic of a busy PACS.
Routing, dependency injection and response objects cost about 30 µs a
request in the framework, more than answering itself, so these answers are
written straight to ASGI from the index. The lane answers only success: a
request it cannot answer as the route would (unknown ID, a query argument it
does not handle, tags to decode again) goes on to the router unchanged, which
keeps a single implementation of every error (a find's body, once read,
is handed on to the router as it arrived). Uploads are the exception: an
error met once the file is admitted (a refused file, a stalled body) is
answered by the application's own exception handler for it, as if the
route had raised it, since handing the body on would ingest it a second
time. It sits behind access control, the Lua filter and the HTTP
conventions, and reports to the request metrics with the same route names
the router gives (``scope["path_template"]``).
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from time import perf_counter

import msgspec
from litestar import Litestar, Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from fastpacs.api.answer_cache import AnswerCache
from fastpacs.api.image_lane import IMAGE_PATH_ENDINGS, image_answer
from fastpacs.api.instances import file_answer
from fastpacs.api.responses import JSON_MEDIA_TYPE, parse_integer
from fastpacs.api.timeouts import BodyDeadline, BodyDeadlines
from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.errors import BareHttpError, OrthancError
from fastpacs.logs import log_request
from fastpacs.metrics import ServerMetrics
from fastpacs.services.content import TagForm
from fastpacs.services.find import parse_find_request
from fastpacs.services.ingest import Origin
from fastpacs.services.registry import Services
from fastpacs.storage.blobs import BlobStore

PATH_SEND = "http.response.pathsend"
_JSON_TYPE = (b"content-type", JSON_MEDIA_TYPE.encode())
_DICOM_TYPE = (b"content-type", b"application/dicom")
_LEVELS = {level.plural: level for level in Level}
_RESOURCE_ROUTES = {level: f"/{level.plural}/{{resource_id}}" for level in Level}
_FILE_ROUTE = "/instances/{resource_id}/file"
_NO_FLAGS: frozenset[bytes] = frozenset()
_TAG_ROUTES = {
    "tags": "/instances/{instance_id}/tags",
    "simplified-tags": "/instances/{instance_id}/simplified-tags",
}
_LIST_ARGUMENTS = frozenset({b"since", b"limit", b"expand"})
_LANE_FLAGS = frozenset({b"simplify", b"short", b"expand"})
FIND_PATH = "/tools/find"
UPLOAD_PATH = "/instances"
MAX_LANE_BODY = 1 << 16
"""A find body larger than this (or of unknown length) goes to the router."""
MAX_READ_FILE = 2 << 20
"""Bytes: a larger file is sent by ``pathsend`` (even a cached one would hold the event loop too long)."""
_encoder = msgspec.json.Encoder(order="sorted")

Answer = tuple[list[tuple[bytes, bytes]], bytes | bytearray | str, str]
"""Headers, then the body (bytes) or a file path to send (str), then the route name."""


def _query_flags(query: bytes) -> frozenset[bytes] | None:
    """Names of the query arguments; ``None`` when one the lane does not handle is present."""
    names = frozenset(item.partition(b"=")[0] for item in query.split(b"&") if item)
    return names if names <= _LANE_FLAGS else None


class FastLane:
    """ASGI middleware answering the hot routes from the index, delegating everything else."""

    def __init__(self, app: ASGIApp, litestar: Litestar, metrics: ServerMetrics, deadlines: BodyDeadlines):
        self.app = app
        self.litestar = litestar
        self.metrics = metrics
        self.deadlines = deadlines
        self.answers: AnswerCache[Answer] = AnswerCache()
        """Listings and resources, while the index is unchanged."""
        self._services: Services | None = None

    def _current_services(self) -> Services | None:
        """The services once the lifespan started them (looked up once: ``State`` lookups are slow)."""
        if self._services is None:
            self._services = getattr(self.litestar.state, "services", None)
        return self._services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if method == "GET":
            started = perf_counter()
            answer = self._answer(scope)
            if answer is None and scope["path"].endswith(IMAGE_PATH_ENDINGS):
                answer = await image_answer(self._current_services(), scope)
            if answer is None:
                await self.app(scope, receive, send)
                return
            headers, body, route = answer
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if isinstance(body, str):
                await send({"type": PATH_SEND, "path": body})
            elif route is _FILE_ROUTE:
                # Sent as a stream of one piece, as the file by its path would be: DICOM files go
                # out as stored, not gzipped (see the HTTP conventions).
                await send({"type": "http.response.body", "body": body, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await send({"type": "http.response.body", "body": body, "more_body": False})
            self._finished(scope, "GET", route, started)
        elif method == "POST" and scope["path"] == FIND_PATH and scope["type"] == "http":
            await self._find(scope, receive, send)
        elif method == "POST" and scope["path"] == UPLOAD_PATH and scope["type"] == "http":
            await self._upload(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _finished(self, scope: Scope, method: str, route: str, started: float) -> None:
        seconds = perf_counter() - started
        if self.metrics.enabled:
            self.metrics.request_answered(method, route, 200, seconds)
        log_request(scope, route, 200, seconds)

    async def _find(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /tools/find: answered here when the body is small and the query valid, else routed."""
        started = perf_counter()
        services = self._current_services()
        size = _body_size(scope)
        if services is None or size is None or size > MAX_LANE_BODY:
            await self.app(scope, receive, send)
            return
        body = _ReadBody(receive)
        await body.read(services.config.http_request_timeout, self.deadlines)
        if body.failure is None:
            try:
                answer = await services.find.find(parse_find_request(body.data))
            except (OrthancError, UnicodeDecodeError, RecursionError):
                # A bad query, or a body msgspec cannot decode (invalid UTF-8, nesting too deep):
                # the router answers it as the route raising it (api/errors.py).
                answer = None
            if answer is not None:
                body = _encoder.encode(answer)
                await send({"type": "http.response.start", "status": 200, "headers": _json_headers(body)})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                self._finished(scope, "POST", FIND_PATH, started)
                return
        await self.app(scope, body.replay, send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /instances of one file, with its length announced and within ``MaximumUploadSize``.

        Admitted among the pending ingests before its body is read, as the
        route does. A multipart form, a body without a length (chunked,
        inflated) or over the limit go to the router, and so does a request whose
        client left before its body was in. Errors (503 when the pending
        ingests are full, 408 for a body that stalls, a refused file...) are
        answered by the application's exception handlers, as if the route had
        raised them.
        """
        started = perf_counter()
        services = self._current_services()
        size = _body_size(scope)
        if services is None or size is None or size > services.ingest.max_upload_size or _is_form(scope):
            await self.app(scope, receive, send)
            return
        counted = False
        try:
            with services.ingest.pending.admit(size):
                body = _ReadBody(receive)
                await body.read(services.config.http_request_timeout, self.deadlines)
                if isinstance(body.failure, BareHttpError):
                    raise body.failure
                if body.failure is None:
                    counted = self.metrics.enabled
                    if counted:
                        self.metrics.request_started()
                    client = scope.get("client")
                    origin = Origin(kind="RestApi", remote_ip=client[0] if client else "")
                    outcome = await services.ingest.ingest_upload(body.data, origin)
        except Exception as error:  # noqa: BLE001 - answered as the router answers what a route raises
            status = await self._error(scope, receive, send, error)
            self._upload_finished(scope, status, started, counted)
            return
        if body.failure is not None:  # the client left: the router ends the request as it does
            await self.app(scope, body.replay, send)
            return
        answer = _encoder.encode(file_answer(outcome))
        await send({"type": "http.response.start", "status": 200, "headers": _json_headers(answer)})
        await send({"type": "http.response.body", "body": answer, "more_body": False})
        self._upload_finished(scope, 200, started, counted)

    def _upload_finished(self, scope: Scope, status: int, started: float, counted: bool) -> None:
        """Metrics and log of an upload; ``counted`` once :meth:`ServerMetrics.request_started` said so."""
        seconds = perf_counter() - started
        if counted:
            self.metrics.request_finished("POST", UPLOAD_PATH, status, seconds)
        elif self.metrics.enabled:
            self.metrics.request_answered("POST", UPLOAD_PATH, status, seconds)
        log_request(scope, UPLOAD_PATH, status, seconds)

    async def _error(self, scope: Scope, receive: Receive, send: Send, error: Exception) -> int:
        """Answer ``error`` with the application's handler for it; the status sent."""
        handlers = self.litestar.exception_handlers
        handler = next(handlers[kind] for kind in type(error).__mro__ if kind in handlers)
        request: Request = Request(scope, receive)
        response = handler(request, error)
        await response.to_asgi_response(None, request)(scope, receive, send)
        return response.status_code

    def _answer(self, scope: Scope) -> Answer | None:
        """The answer to a GET, or ``None`` to hand the request on (websocket scopes have no method)."""
        services = self._current_services()
        if services is None:
            return None
        parts = scope["path"].split("/")
        query = scope["query_string"]
        if len(parts) <= 3 and parts[1] in _LEVELS:
            return self._index_answer(services, parts, query)
        flags = _query_flags(query) if query else _NO_FLAGS
        if flags is None or len(parts) != 4 or parts[1] != "instances":
            return None
        rid = parse_id(parts[2])
        if rid is None:
            return None
        if parts[3] == "file":
            return self._file(services, rid, PATH_SEND in scope.get("extensions", ()))
        if parts[3] in _TAG_ROUTES:
            return self._tags(services, rid, parts[3], flags)
        return None

    def _index_answer(self, services: Services, parts: list[str], query: bytes) -> Answer | None:
        """A level's listing or a resource, answered from the index, or from :attr:`answers`."""
        version = services.database.version()
        key = (parts[1], parts[2] if len(parts) == 3 else None, query)
        answer = self.answers.get(version, key)
        if answer is not None:
            return answer
        level = _LEVELS[parts[1]]
        if len(parts) == 2:
            answer = self._listing(services, level, query)
        else:
            flags = _query_flags(query) if query else _NO_FLAGS
            # ?short shows a resource's main tags by number: the router formats them.
            if flags is None or b"short" in flags:
                return None
            answer = self._resource(services, level, parts[2])
        if answer is not None:
            self.answers.put(version, key, answer)
        return answer

    @staticmethod
    def _resource(services: Services, level: Level, public_id: str) -> Answer | None:
        rid = parse_id(public_id)
        answer = services.resources.get(level, rid) if rid is not None else None
        if answer is None:
            return None
        body = _encoder.encode(answer)
        return _json_headers(body), body, _RESOURCE_ROUTES[level]

    @staticmethod
    def _listing(services: Services, level: Level, query: bytes) -> Answer | None:
        """``GET /{level}`` with ``since`` and ``limit`` (both or neither) and ``expand``, nothing else."""
        arguments = _list_arguments(query)
        if arguments is None:
            return None
        since, limit, expand = arguments
        if expand:
            body = _encoder.encode(services.resources.list_expanded(level, since, limit))
        else:
            body = _encoder.encode(services.resources.list_ids(level, since, limit))
        return _json_headers(body), body, f"/{level.plural}"

    @staticmethod
    def _tags(services: Services, rid: RawId, segment: str, flags: frozenset[bytes]) -> Answer | None:
        if segment == "simplified-tags" or b"simplify" in flags:
            form = TagForm.SIMPLIFIED
        else:
            form = TagForm.SHORT if b"short" in flags else TagForm.FULL
        body = services.content.stored_tags_json(rid, form)
        return None if body is None else (_json_headers(body), body, _TAG_ROUTES[segment])

    @staticmethod
    def _file(services: Services, rid: RawId, path_send: bool) -> Answer | None:
        """The DICOM file, with its length in the headers as Orthanc's (not chunked).

        A file of at most :data:`MAX_READ_FILE` bytes that is in the page cache is
        read on the event loop, without blocking (``RWF_NOWAIT``): measured with
        the ``file`` benchmark, that halves the server's CPU per request against
        Granian's ``pathsend`` (a file read in pieces on its blocking threads) or a
        read on a thread. Larger files, and files the read would wait for, are
        sent by ``pathsend``; a file that cannot be opened, or one to wait for on a
        server without ``pathsend``, is left to the router.
        """
        found = services.resources.instance_blob_digest(rid)
        if found is None:
            return None
        path, disposition = _blob_file(services.storage, *found)
        try:
            size, body = _read_if_cached(path)
        except OSError:
            return None
        if body is None and not path_send:
            return None
        headers = [_DICOM_TYPE, disposition, (b"content-length", str(size).encode())]
        return headers, path if body is None else body, _FILE_ROUTE


def _read_if_cached(path: str) -> tuple[int, bytearray | None]:
    """The size of a file, and its content if it is small and in the page cache (else ``None``).

    The buffer read into is the body sent: Granian takes any buffer, and a copy
    into ``bytes`` cost about a tenth of the server's CPU per request.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(descriptor).st_size
        if size > MAX_READ_FILE:
            return size, None
        buffer = bytearray(size)
        try:
            read = os.preadv(descriptor, [buffer], 0, os.RWF_NOWAIT)
        except OSError:  # some of it is not in the page cache (or the file system cannot tell)
            return size, None
    finally:
        os.close(descriptor)
    return size, buffer if read == size else None


@lru_cache(maxsize=4096)
def _blob_file(storage: BlobStore, digest: bytes, file_uuid: str) -> tuple[str, tuple[bytes, bytes]]:
    """The path of a blob and its ``Content-Disposition``, both fixed by its digest (content-addressed)."""
    return str(storage.path_of(digest)), (b"content-disposition", f'filename="{file_uuid}.dcm"'.encode())


def _list_arguments(query: bytes) -> tuple[int, int | None, bool] | None:
    """(since, limit or ``None`` for all, expand) of a listing; ``None`` for what the router answers."""
    values: dict[bytes, bytes] = {}
    for item in query.split(b"&"):
        if item:
            name, _, value = item.partition(b"=")
            if name not in _LIST_ARGUMENTS or name in values:
                return None
            values[name] = value
    expand = b"expand" in values
    if b"since" not in values and b"limit" not in values:
        return 0, None, expand
    since, limit = _count(values.get(b"since")), _count(values.get(b"limit"))
    if since is None or limit is None:
        return None  # missing or malformed: the router words the error
    return since, limit, expand


def _count(value: bytes | None) -> int | None:
    """A ``since``/``limit`` value as the router accepts it (digits, below 2**64), else ``None``."""
    if value is None:
        return None
    number = parse_integer(value.decode("latin-1"))
    return number if number is not None and 0 <= number < 2**64 else None


def _body_size(scope: Scope) -> int | None:
    """The length a request announces for its body (one valid ``Content-Length``), else ``None``.

    A body sent in chunks, or inflated on its way in (the HTTP conventions
    drop its encoded length), has none.
    """
    size = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            if size is not None or not value.isdigit():
                return None
            size = int(value)
    return size


def _is_form(scope: Scope) -> bool:
    """Whether the body is a ``multipart/form-data`` form (its parts are the files of an upload)."""
    return any(
        name == b"content-type" and value.partition(b";")[0].strip().lower() == b"multipart/form-data"
        for name, value in scope["headers"]
    )


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [_JSON_TYPE, (b"content-length", str(len(body)).encode())]


@dataclass
class _ReadBody:
    """A request body read whole (under the body deadline), then replayed to the router if need be."""

    receive: Receive
    data: bytes = b""
    failure: BareHttpError | Message | None = None
    """The deadline's 408, or the message that ended the body (a disconnection): replayed as met."""
    _replayed: bool = False

    async def read(self, timeout: float, deadlines: BodyDeadlines) -> None:
        # The pieces joined at the end: one copy into a bytes object (the ingest hashes slices of it,
        # which a bytearray's are not), measured cheaper than filling a buffer of the announced size.
        deadline = BodyDeadline(self.receive, timeout, deadlines) if timeout > 0 else None
        receive = deadline or self.receive
        chunks = []
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    self.failure = message
                    break
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except BareHttpError as failure:
            self.failure = failure
        finally:
            if deadline is not None:  # cancelled (the server stopping): no timer left behind
                deadline.close()
        self.data = b"".join(chunks)

    async def replay(self) -> Message:
        """The body as one message, then the connection's own ``receive``."""
        if self._replayed:
            return await self.receive()
        self._replayed = True
        if isinstance(self.failure, BareHttpError):
            raise self.failure
        return self.failure or {"type": "http.request", "body": self.data, "more_body": False}


def fast_lane_installer(metrics: ServerMetrics, deadlines: BodyDeadlines) -> Callable[[Litestar], None]:
    """A start-up hook putting :class:`FastLane` in front of the router (after the HTTP conventions)."""

    def install(app: Litestar) -> None:
        app.asgi_handler = FastLane(app.asgi_handler, app, metrics, deadlines)

    return install
