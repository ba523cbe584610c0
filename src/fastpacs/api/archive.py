"""Archives and DICOM media: POST /tools/create-archive, /tools/create-media, /tools/create-media-extended,
and /{patients,studies,series}/{id}/archive and /media.

A synchronous request answers the ZIP itself, streamed as it is built; an
asynchronous one answers ``{"ID", "Path"}`` of the Archive (or Media) job,
whose file ``GET /jobs/{id}/archive`` serves. The request bodies and their
errors are Orthanc 1.10.1's; a media's DICOMDIR is extended with
``"Extended": true``, on ``/tools/create-media-extended`` (unless
``"Extended": false``) and on ``GET .../media?extended``.
"""

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from fastpacs.api.responses import json_response
from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.json_body import json_body
from fastpacs.services.registry import Services
from fastpacs.services.request_fields import boolean_field, is_synchronous, priority_field


class ArchiveOptions(msgspec.Struct):
    synchronous: bool = True
    priority: int = 0
    extended: bool = False
    """Media only: the extended DICOMDIR."""


def _options(document: dict[str, Any], extended: bool = False) -> ArchiveOptions:
    """``Synchronous`` (or, when absent, the opposite of ``Asynchronous``), ``Priority`` and ``Extended``
    (``extended`` when absent)."""
    if "Transcode" in document:
        raise OrthancError(ErrorCode.NOT_IMPLEMENTED, "fastpacs cannot transcode the files of an archive")
    return ArchiveOptions(
        synchronous=is_synchronous(document),
        priority=priority_field(document),
        extended=boolean_field(document, "Extended", extended),
    )


def _resource_ids(value: Any) -> list[RawId]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Expected a list of strings (Orthanc identifiers)")
    ids = [parse_id(item) for item in value]
    if any(rid is None for rid in ids):
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
    return ids


def parse_create_archive(body: bytes, extended: bool = False) -> tuple[list[RawId], ArchiveOptions]:
    """The body of /tools/create-archive or -media: a list of IDs, or ``{"Resources": [...], options}``.

    ``extended``: the media's ``Extended`` when the body does not say.
    """
    document = json_body(body, details="Expected a list of resources to archive in the body")
    if isinstance(document, list):
        return _resource_ids(document), ArchiveOptions(extended=extended)
    if not isinstance(document, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    if "Resources" not in document:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Missing field Resources in the JSON body")
    return _resource_ids(document["Resources"]), _options(document, extended)


def parse_resource_archive(body: bytes) -> ArchiveOptions:
    """The body of ``POST /{level}/{id}/archive``: options in an object (any other JSON is ignored)."""
    document = json_body(body)
    return _options(document) if isinstance(document, dict) else ArchiveOptions()


async def archive_response(
    services: Services, resources: list[RawId], options: ArchiveOptions, filename: str
) -> Response:
    """The ZIP, streamed (synchronous), or the job that builds it (asynchronous)."""
    if options.synchronous:
        chunks = await services.archives.stream(resources, options.priority)
        return Stream(
            chunks,
            media_type="application/zip",
            headers={"Content-Disposition": f'filename="{filename}"'},
        )
    job_id = await services.archives.submit(resources, options.priority)
    return json_response({"ID": job_id, "Path": f"/jobs/{job_id}"})


async def media_response(
    services: Services, resources: list[RawId], options: ArchiveOptions, filename: str
) -> Response:
    """The media's ZIP, streamed (synchronous), or the job that builds it (asynchronous)."""
    if options.synchronous:
        chunks = await services.media.stream(resources, options.extended, options.priority)
        return Stream(
            chunks,
            media_type="application/zip",
            headers={"Content-Disposition": f'filename="{filename}"'},
        )
    job_id = await services.media.submit(resources, options.extended, options.priority)
    return json_response({"ID": job_id, "Path": f"/jobs/{job_id}"})


@post("/tools/create-archive", name="tools-create-archive", status_code=200)
async def create_archive(request: Request, services: Services) -> Response:
    resources, options = parse_create_archive(await request.body())
    return await archive_response(services, resources, options, "Archive.zip")


@post("/tools/create-media", name="tools-create-media", status_code=200)
async def create_media(request: Request, services: Services) -> Response:
    resources, options = parse_create_archive(await request.body())
    return await media_response(services, resources, options, "Archive.zip")


@post("/tools/create-media-extended", name="tools-create-media-extended", status_code=200)
async def create_media_extended(request: Request, services: Services) -> Response:
    resources, options = parse_create_archive(await request.body(), extended=True)
    return await media_response(services, resources, options, "Archive.zip")


def _resource_archive_handlers(level: Level) -> list[HTTPRouteHandler]:
    path = f"/{level.plural}/{{resource_id:str}}/archive"

    @get(path, name=f"{level.plural}-archive")
    async def download(resource_id: str, services: Services) -> Response:
        return await archive_response(
            services, [_known_id(resource_id)], ArchiveOptions(), f"{resource_id}.zip"
        )

    @post(path, name=f"{level.plural}-archive-post", status_code=200)
    async def create(resource_id: str, request: Request, services: Services) -> Response:
        options = parse_resource_archive(await request.body())
        return await archive_response(services, [_known_id(resource_id)], options, f"{resource_id}.zip")

    return [download, create]


def _resource_media_handlers(level: Level) -> list[HTTPRouteHandler]:
    path = f"/{level.plural}/{{resource_id:str}}/media"

    @get(path, name=f"{level.plural}-media")
    async def download(resource_id: str, request: Request, services: Services) -> Response:
        # Orthanc reads ?extended by its presence: ?extended=false is extended too.
        options = ArchiveOptions(extended="extended" in request.query_params)
        return await media_response(services, [_known_id(resource_id)], options, f"{resource_id}.zip")

    @post(path, name=f"{level.plural}-media-post", status_code=200)
    async def create(resource_id: str, request: Request, services: Services) -> Response:
        options = parse_resource_archive(await request.body())
        return await media_response(services, [_known_id(resource_id)], options, f"{resource_id}.zip")

    return [download, create]


def _known_id(resource_id: str) -> RawId:
    """The ID of the route (Orthanc accepts a resource of any level here); unparsable: unknown resource."""
    rid = parse_id(resource_id)
    if rid is None:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
    return rid


ARCHIVE_HANDLERS: list[HTTPRouteHandler] = [
    create_archive,
    create_media,
    create_media_extended,
    *(
        handler
        for level in (Level.PATIENT, Level.STUDY, Level.SERIES)
        for handlers in (_resource_archive_handlers, _resource_media_handlers)
        for handler in handlers(level)
    ),
]
