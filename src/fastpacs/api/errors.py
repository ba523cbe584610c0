"""Turning exceptions into Orthanc's error answers.

Orthanc answers most errors with a JSON body (``HttpError``, ``HttpStatus``,
``Message``, ``Method``, ``OrthancError``, ``OrthancStatus``, ``Uri`` and,
when there is one, ``Details``), and a few with an empty body (see
:class:`fastpacs.errors.BareHttpError`). A wrong method is an empty 405 with
an ``Allow`` header. Nothing escapes as a traceback.
"""

import logging
import os
from http import HTTPStatus

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException

from fastpacs.api.security import AccessPolicy
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError, ServerBusyError, describe
from fastpacs.services.registry import Services

logger = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder(order="sorted")
BLOB_NAME_LENGTH = 64
"""Hex digits of a SHA-256: the length of a blob file's name."""
_LITESTAR_STATUS_TO_ORTHANC = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.UNKNOWN_RESOURCE,
    413: ErrorCode.BAD_REQUEST,
}


def error_body(request: Request, code: ErrorCode, http_status: int, details: str | None) -> bytes:
    body = {
        "HttpError": HTTPStatus(http_status).phrase,
        "HttpStatus": http_status,
        "Message": describe(code),
        "Method": request.method,
        "OrthancError": describe(code),
        "OrthancStatus": int(code),
        "Uri": request.url.path,
    }
    if details:
        body["Details"] = details
    return _encoder.encode(body)


def _describe_errors(request: Request) -> bool:
    return request.app.state.config.http_describe_errors


def orthanc_error_response(request: Request, error: OrthancError) -> Response[bytes]:
    if not _describe_errors(request):
        return Response(b"", status_code=error.http_status, media_type="application/json")
    body = error_body(request, error.code, error.http_status, error.details)
    return Response(body, status_code=error.http_status, media_type="application/json")


def bare_error_response(_request: Request, error: BareHttpError) -> Response[bytes]:
    return Response(b"", status_code=error.http_status, headers=error.headers, media_type="text/plain")


def _refused(request: Request) -> Response[bytes] | None:
    """The access-control answer to a request the router refused before any middleware ran."""
    refusal = AccessPolicy(request.app.state.config).refusal(request.scope)
    if refusal is None:
        return None
    status, headers = refusal
    return Response(b"", status_code=status, headers=headers)


def not_found_response(request: Request, _error: NotFoundException) -> Response[bytes]:
    refused = _refused(request)
    if refused is not None:
        return refused
    return orthanc_error_response(request, OrthancError(ErrorCode.UNKNOWN_RESOURCE))


def method_not_allowed_response(request: Request, error: MethodNotAllowedException) -> Response[bytes]:
    refused = _refused(request)
    if refused is not None:
        return refused
    allowed = (error.headers or {}).get("allow", "")
    methods = [method.strip() for method in allowed.split(",") if method.strip() not in ("", "OPTIONS")]
    order = ["GET", "POST", "PUT", "DELETE"]
    methods.sort(key=lambda method: order.index(method) if method in order else len(order))
    return Response(b"", status_code=405, headers={"Allow": ",".join(methods)}, media_type="text/plain")


def http_exception_response(request: Request, error: HTTPException) -> Response[bytes]:
    code = _LITESTAR_STATUS_TO_ORTHANC.get(error.status_code, ErrorCode.BAD_REQUEST)
    return orthanc_error_response(request, OrthancError(code, error.detail, http_status=error.status_code))


def server_busy_response(request: Request, error: ServerBusyError) -> Response[bytes]:
    response = orthanc_error_response(
        request, OrthancError(ErrorCode.DATABASE_UNAVAILABLE, error.details, http_status=503)
    )
    response.headers["Retry-After"] = str(error.retry_after)
    return response


def undecodable_input_response(
    request: Request, error: RecursionError | UnicodeDecodeError
) -> Response[bytes]:
    """Input nested too deeply to decode, or not UTF-8 where text is expected.

    msgspec raises these two (not ``DecodeError``) for a JSON body of
    thousands of nested arrays or with invalid UTF-8 in a string: the client's
    error, answered as Orthanc answers an unparsable body. Logged with its
    cause, so that one raised by the server itself would still be seen.
    """
    logger.warning("undecodable input on %s %s: %r", request.method, request.url.path, error)
    return orthanc_error_response(request, OrthancError(ErrorCode.BAD_FILE_FORMAT, str(error)))


def missing_file_response(request: Request, error: FileNotFoundError) -> Response[bytes]:
    """A stored file that is not there when the request reads it.

    Requests look a resource up in the index, then read its file. A delete
    committed in between removes the file: the request is answered as it
    would have been a moment later, 404 "Unknown resource". A file the index
    still refers to was lost from the storage: Orthanc's 500 "The specified
    path does not point to a regular file", naming it (logged, to be seen).
    """
    digest = _blob_digest(error.filename)
    if digest is not None and not is_lost(request.app.state.services, digest):
        return orthanc_error_response(request, OrthancError(ErrorCode.UNKNOWN_RESOURCE))
    logger.warning("a stored file is missing on %s %s: %s", request.method, request.url.path, error)
    details = f"The path does not point to a regular file: {error.filename}"
    return orthanc_error_response(request, OrthancError(ErrorCode.REGULAR_FILE_EXPECTED, details))


def is_lost(services: Services, digest: bytes) -> bool:
    """Whether the index refers to a blob the storage does not hold.

    The two are never looked at in the same instant, and meanwhile the
    resource may be deleted (its index entries go, then its file) or the same
    bytes stored again (the file comes, then the index entries): a blob
    counts as lost only if it is referenced, missing, still referenced and
    still missing. A request whose file was deleted and stored again under it
    is answered as a deleted resource, not as a lost file.
    """
    for _ in range(2):
        if not services.resources.is_blob_referenced(digest) or services.storage.exists(digest):
            return False
    return True


def _blob_digest(path: object) -> bytes | None:
    """The SHA-256 a blob file is named by (see :class:`fastpacs.storage.blobs.BlobStore`)."""
    name = os.path.basename(str(path))
    if len(name) != BLOB_NAME_LENGTH:
        return None
    try:
        return bytes.fromhex(name)
    except ValueError:
        return None


def internal_error_response(request: Request, error: Exception) -> Response[bytes]:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return orthanc_error_response(
        request,
        OrthancError(ErrorCode.INTERNAL_ERROR, "An unhandled exception was generated inside the HTTP server"),
    )


EXCEPTION_HANDLERS = {
    OrthancError: orthanc_error_response,
    BareHttpError: bare_error_response,
    ServerBusyError: server_busy_response,
    NotFoundException: not_found_response,
    MethodNotAllowedException: method_not_allowed_response,
    HTTPException: http_exception_response,
    RecursionError: undecodable_input_response,
    UnicodeDecodeError: undecodable_input_response,
    FileNotFoundError: missing_file_response,
    Exception: internal_error_response,
}
