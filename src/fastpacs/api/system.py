"""/system, /statistics and /changes."""

from litestar import Request, Response, delete, get

from fastpacs import ORTHANC_API_VERSION, __version__
from fastpacs.api.responses import empty_ok, flag, json_response
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
    arguments = request.query_params
    since = _lenient_count(arguments.get("since"), 0)
    limit = _lenient_count(arguments.get("limit"), DEFAULT_LIMIT)
    return json_response(services.changes.changes(since, limit, flag(request, "last")))


@delete("/changes", name="changes-clear", status_code=200)
async def clear_changes(services: Services) -> Response[bytes]:
    await services.changes.clear()
    return empty_ok()


def _lenient_count(text: str | None, default: int) -> int:
    """/changes ignores a malformed number instead of failing, as Orthanc does."""
    if text is None:
        return default
    try:
        return max(0, int(text))
    except ValueError:
        return default
