"""Answer helpers shared by the controllers: JSON and plain text as Orthanc sends them."""

import asyncio
import re
from typing import Any

import msgspec
from litestar import Request, Response

from fastpacs.api.http_conventions import accepts_deflate
from fastpacs.dicom.ids import RawId, parse_id
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.services.registry import Services
from fastpacs.storage.blobs import BlobStore, StoredBlob

JSON_MEDIA_TYPE = "application/json; charset=utf-8"
_encoder = msgspec.json.Encoder(order="sorted")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def json_response(content: Any, status_code: int = 200) -> Response[bytes]:
    """JSON with sorted keys, as Orthanc writes it (compact rather than indented)."""
    return Response(_encoder.encode(content), media_type=JSON_MEDIA_TYPE, status_code=status_code)


def text_response(content: str | bytes = b"", status_code: int = 200) -> Response[bytes]:
    body = content.encode() if isinstance(content, str) else content
    # Orthanc labels plain values "text/plain" without a charset (the framework would add one).
    return Response(body, headers={"content-type": "text/plain"}, status_code=status_code)


def empty_ok() -> Response[bytes]:
    """Orthanc's answer to a PUT or DELETE with nothing to say: 200, text/plain, no body."""
    return text_response(b"")


def empty_object() -> Response[bytes]:
    """Orthanc's ``{}`` answer to an action (a job control, a reset, an attachment written...).

    Labelled ``application/json`` without a charset, as Orthanc labels it.
    """
    return Response(b"{}", media_type="application/json")


def flag(request: Request, name: str) -> bool:
    """Orthanc tests boolean query arguments for presence: ``?expand`` and ``?expand=false`` both set it."""
    return name in request.query_params


def paging(request: Request) -> tuple[int, int | None]:
    """``since`` and ``limit`` (both or neither, as Orthanc requires); ``(0, None)`` when absent."""
    since = request.query_params.get("since")
    limit = request.query_params.get("limit")
    if since is None and limit is None:
        return 0, None
    uri = request.url.path.rstrip("/") + "/"
    if since is None:
        raise OrthancError(ErrorCode.BAD_REQUEST, f'Missing "since" argument for GET request against: {uri}')
    if limit is None:
        raise OrthancError(ErrorCode.BAD_REQUEST, f'Missing "limit" argument for GET request against: {uri}')
    return parse_count(since), parse_count(limit)


def parse_integer(text: str) -> int | None:
    """An integer written as Orthanc reads one (digits with an optional sign, nothing else), or None."""
    return int(text) if _INTEGER.fullmatch(text) else None


def parse_count(text: str) -> int:
    """A non-negative 64-bit integer argument; Orthanc's "Bad type for a parameter" otherwise."""
    value = parse_integer(text)
    if value is None or not 0 <= value < 2**64:
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, "Syntax error in some user-supplied data")
    return value


def route_id(public_id: str) -> RawId:
    """The raw form of the ID a route is about; unparsable, it is an unknown resource (empty 404)."""
    rid = parse_id(public_id)
    if rid is None:
        raise BareHttpError(404)
    return rid


def unknown_resource() -> OrthancError:
    """Orthanc's JSON 404 for an unknown ID below a resource route (``/instances/{unknown}/file``)."""
    return OrthancError(ErrorCode.UNKNOWN_RESOURCE)


def takes_deflate(request: Request, services: Services) -> bool:
    """Whether a compressed attachment goes to this client as its stored zlib stream (as Orthanc)."""
    return services.config.http_compression_enabled and accepts_deflate(
        request.headers.get("accept-encoding", "").encode("latin-1")
    )


async def content_response(
    storage: BlobStore, blob: StoredBlob, headers: dict[str, str], deflate: bool
) -> Response[bytes]:
    """A stored file's content: for a client that takes deflate, a compressed one is sent as it is
    stored (its zlib stream, ``Content-Encoding: deflate``) without being inflated, as Orthanc does."""
    if deflate and blob.compressed and (stream := await asyncio.to_thread(storage.read_zlib_stream, blob)):
        return Response(stream, headers={**headers, "Content-Encoding": "deflate"})
    return Response(await asyncio.to_thread(storage.read, blob), headers=headers)
