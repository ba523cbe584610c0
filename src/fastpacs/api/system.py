"""/system, /statistics and /changes."""

from litestar import Request, Response, delete, get

from fastpacs import ORTHANC_API_VERSION, __version__
from fastpacs.api.responses import empty_ok, flag, json_response, parse_integer
from fastpacs.services.changes import DEFAULT_LIMIT
from fastpacs.services.registry import Services

ORTHANC_REST_API_VERSION = 16
ORTHANC_DATABASE_VERSION = 6


@get("/system", name="system")
async def system(services: Services) -> Response[bytes]:
    config = services.config
    return json_response(
        {
            "ApiVersion": ORTHANC_REST_API_VERSION,
            "CheckRevisions": config.check_revisions,
            "DatabaseBackendPlugin": None,
            "DatabaseVersion": ORTHANC_DATABASE_VERSION,
            "DicomAet": config.dicom_aet,
            "DicomPort": config.dicom_port,
            "FastpacsVersion": __version__,
            "HttpPort": config.http_port,
            "IsHttpServerSecure": config.ssl_enabled
            or not config.remote_access_allowed
            or config.authentication_required,
            "Name": config.name,
            "PluginsEnabled": True,
            "StorageAreaPlugin": None,
            "Version": ORTHANC_API_VERSION,
        }
    )


@get("/statistics", name="statistics")
async def statistics(services: Services) -> Response[bytes]:
    return json_response(services.resources.statistics())


@get("/changes", name="changes")
async def changes(request: Request, services: Services) -> Response[bytes]:
    since, limit = since_and_limit(request.query_params.get("since"), request.query_params.get("limit"))
    return json_response(services.changes.changes(since, limit, flag(request, "last")))


@delete("/changes", name="changes-clear", status_code=200)
async def clear_changes(services: Services) -> Response[bytes]:
    await services.changes.clear()
    return empty_ok()


def since_and_limit(since_text: str | None, limit_text: str | None) -> tuple[int, int]:
    """/changes reads ``since`` then ``limit`` and keeps the defaults from the first malformed one.

    As in Orthanc, a malformed number is not an error: ``?limit=many`` keeps the
    default limit, and ``?since=x&limit=2`` ignores both. Orthanc reads ``since``
    as a signed 64-bit and ``limit`` as an unsigned 32-bit integer: a number out
    of those ranges is malformed too.
    """
    since = 0 if since_text is None else _within(parse_integer(since_text), -(2**63), 2**63 - 1)
    if since is None:
        return 0, DEFAULT_LIMIT
    limit = (
        DEFAULT_LIMIT if limit_text is None else _within(parse_integer(limit_text), -(2**32) + 1, 2**32 - 1)
    )
    return max(0, since), DEFAULT_LIMIT if limit is None else max(0, limit)


def _within(value: int | None, lowest: int, highest: int) -> int | None:
    return value if value is not None and lowest <= value <= highest else None
