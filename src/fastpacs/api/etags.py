"""Entity tags of metadata entries and attachments, as Orthanc sends and checks them."""

from litestar import Request, Response

from fastpacs.api.errors import orthanc_error_response
from fastpacs.errors import OrthancError
from fastpacs.services.metadata import ETag


def with_etag(response: Response[bytes], tag: str) -> Response[bytes]:
    response.headers["ETag"] = f'"{tag}"'
    return response


def not_modified(request: Request, tag: str) -> Response[bytes] | None:
    """Orthanc's empty 304 when ``If-None-Match`` names the current ETag; ``None`` otherwise.

    A malformed ``If-None-Match`` is its 400 "Parameter out of range", which carries the ETag too.
    """
    try:
        named = ETag.parse(request.headers.get("if-none-match"), "If-None-Match")
    except OrthancError as error:
        return with_etag(orthanc_error_response(request, error), tag)
    if named is None or str(named) != tag:
        return None
    return with_etag(Response(b"", status_code=304), tag)
