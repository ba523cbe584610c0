"""/{level}/{id}/attachments: list, read, verify, add and remove attachments.

Every answer about one attachment carries its ETag (revision and MD5), as
Orthanc's do; ``PUT`` and ``DELETE`` take it back in ``If-Match``, ``GET``
in ``If-None-Match`` (an empty 304 when it is current).
"""

from collections.abc import Awaitable, Callable

from litestar import Request, Response, delete, get, post, put
from litestar.handlers import HTTPRouteHandler

from fastpacs.api.etags import not_modified, with_etag
from fastpacs.api.responses import (
    content_response,
    empty_object,
    empty_ok,
    flag,
    json_response,
    takes_deflate,
    text_response,
    unknown_resource,
)
from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.index.attachments import DICOM, Attachment, etag
from fastpacs.services.attachments import AttachmentService
from fastpacs.services.registry import Services

OPERATIONS = [
    "compress",
    "compressed-data",
    "compressed-md5",
    "compressed-size",
    "data",
    "info",
    "is-compressed",
    "md5",
    "size",
    "uncompress",
    "verify-md5",
    "uuid",
]
"""What Orthanc 1.10.1 lists for one attachment, in its order (it lists ``uuid`` but has no such route)."""

View = Callable[[AttachmentService, int, Attachment, bool], Awaitable[Response[bytes]]]
"""An operation's answer from the attachment; the last argument says whether the client takes a
compressed attachment's zlib stream as it is stored (:func:`takes_deflate`)."""


def _resource(public_id: str) -> RawId:
    rid = parse_id(public_id)
    if rid is None:
        raise unknown_resource()
    return rid


def _with_etag(response: Response[bytes], attachment: Attachment) -> Response[bytes]:
    return with_etag(response, etag(attachment))


async def _data(
    service: AttachmentService, kind: int, attachment: Attachment, deflate: bool
) -> Response[bytes]:
    extension = ".dcm" if kind == DICOM else ""
    headers = {
        "Content-Type": service.mime_type_of(kind),
        "Content-Disposition": f'filename="{attachment.blob.uuid}{extension}"',
    }
    return await content_response(service.storage, attachment.blob, headers, deflate)


async def _stored_data(
    service: AttachmentService, _kind: int, attachment: Attachment, _deflate: bool
) -> Response[bytes]:
    return Response(await service.read_stored(attachment), media_type="application/octet-stream")


async def _size(
    _service: AttachmentService, _kind: int, attachment: Attachment, _deflate: bool
) -> Response[bytes]:
    return text_response(str(attachment.blob.size))


async def _stored_size(
    _service: AttachmentService, _kind: int, attachment: Attachment, _deflate: bool
) -> Response[bytes]:
    return text_response(str(attachment.blob.stored_size))


async def _md5(
    _service: AttachmentService, _kind: int, attachment: Attachment, _deflate: bool
) -> Response[bytes]:
    assert attachment.md5 is not None
    return text_response(attachment.md5.hex())


async def _stored_md5(
    _service: AttachmentService, _kind: int, attachment: Attachment, _deflate: bool
) -> Response[bytes]:
    assert attachment.stored_md5 is not None
    return text_response(attachment.stored_md5.hex())


async def _is_compressed(
    _service: AttachmentService, _kind: int, attachment: Attachment, _deflate: bool
) -> Response[bytes]:
    return text_response("1" if attachment.blob.compressed else "0")


async def _info(
    _service: AttachmentService, kind: int, attachment: Attachment, _deflate: bool
) -> Response[bytes]:
    assert attachment.md5 is not None and attachment.stored_md5 is not None
    return json_response(
        {
            "CompressedMD5": attachment.stored_md5.hex(),
            "CompressedSize": attachment.blob.stored_size,
            "ContentType": kind,
            "UncompressedMD5": attachment.md5.hex(),
            "UncompressedSize": attachment.blob.size,
            "Uuid": attachment.blob.uuid,
        }
    )


VIEWS: dict[str, View] = {
    "data": _data,
    "compressed-data": _stored_data,
    "size": _size,
    "compressed-size": _stored_size,
    "md5": _md5,
    "compressed-md5": _stored_md5,
    "is-compressed": _is_compressed,
    "info": _info,
}
"""The GET operations: the ``compressed-*`` views show the stored bytes (the content itself when the
attachment is stored uncompressed), the others the content."""


def _view_handler(level: Level, base: str, operation: str, view: View) -> HTTPRouteHandler:
    @get(f"{base}/{{name:str}}/{operation}", name=f"{level.plural}-attachment-{operation}")
    async def handler(resource_id: str, name: str, request: Request, services: Services) -> Response[bytes]:
        kind, attachment = await services.attachments.get(level, _resource(resource_id), name)
        unchanged = not_modified(request, etag(attachment))
        if unchanged is not None:
            return unchanged
        answer = await view(services.attachments, kind, attachment, takes_deflate(request, services))
        return _with_etag(answer, attachment)

    return handler


def _action_handler(level: Level, base: str, operation: str) -> HTTPRouteHandler:
    """``verify-md5`` reads the attachment again; ``compress``/``uncompress`` store it in that form."""

    @post(f"{base}/{{name:str}}/{operation}", name=f"{level.plural}-attachment-{operation}", status_code=200)
    async def handler(resource_id: str, name: str, services: Services) -> Response[bytes]:
        rid = _resource(resource_id)
        if operation == "verify-md5":
            await services.attachments.verify(level, rid, name)
        else:
            await services.attachments.set_compression(level, rid, name, compression=operation == "compress")
        return empty_object()

    return handler


def attachment_handlers(level: Level) -> list[HTTPRouteHandler]:
    base = f"/{level.plural}/{{resource_id:str}}/attachments"

    @get(base, name=f"{level.plural}-attachments")
    async def list_attachments(resource_id: str, request: Request, services: Services) -> Response[bytes]:
        names = services.attachments.names(level, _resource(resource_id))
        return json_response(names if flag(request, "full") else list(names))

    @get(f"{base}/{{name:str}}", name=f"{level.plural}-attachment")
    async def attachment_operations(
        resource_id: str, name: str, request: Request, services: Services
    ) -> Response[bytes]:
        _, attachment = await services.attachments.get(level, _resource(resource_id), name)
        return not_modified(request, etag(attachment)) or _with_etag(json_response(OPERATIONS), attachment)

    @put(f"{base}/{{name:str}}", name=f"{level.plural}-attachment-put", status_code=200)
    async def put_attachment(
        resource_id: str, name: str, request: Request, services: Services
    ) -> Response[bytes]:
        rid = _resource(resource_id)
        attachment = await services.attachments.put(
            level, rid, name, await request.body(), request.headers.get("if-match")
        )
        return _with_etag(empty_object(), attachment)

    @delete(f"{base}/{{name:str}}", name=f"{level.plural}-attachment-delete", status_code=200)
    async def delete_attachment(
        resource_id: str, name: str, request: Request, services: Services
    ) -> Response[bytes]:
        await services.attachments.delete(
            level, _resource(resource_id), name, request.headers.get("if-match")
        )
        return empty_ok()

    return [
        list_attachments,
        attachment_operations,
        put_attachment,
        delete_attachment,
        *(_view_handler(level, base, operation, view) for operation, view in VIEWS.items()),
        *(_action_handler(level, base, operation) for operation in ("verify-md5", "compress", "uncompress")),
    ]
