"""Orthanc's error codes, and the exceptions that carry them up to the REST API.

The numeric codes, their texts and their HTTP statuses are those of Orthanc
1.10.1, so that clients which inspect ``OrthancStatus`` keep working.
Nothing here depends on the web framework: services raise these, the API
layer turns them into responses.
"""

from enum import IntEnum


class ErrorCode(IntEnum):
    """Orthanc's ``OrthancStatus`` values (the ones fastpacs can raise)."""

    INTERNAL_ERROR = -1
    NOT_IMPLEMENTED = 2
    PARAMETER_OUT_OF_RANGE = 3
    NOT_ENOUGH_MEMORY = 4
    BAD_PARAMETER_TYPE = 5
    BAD_SEQUENCE_OF_CALLS = 6
    INEXISTENT_ITEM = 7
    BAD_REQUEST = 8
    NETWORK_PROTOCOL = 9
    URI_SYNTAX = 12
    INEXISTENT_FILE = 13
    CANNOT_WRITE_FILE = 14
    BAD_FILE_FORMAT = 15
    TIMEOUT = 16
    UNKNOWN_RESOURCE = 17
    FULL_STORAGE = 19
    CORRUPTED_FILE = 20
    INEXISTENT_TAG = 21
    READ_ONLY = 22
    UNKNOWN_DICOM_TAG = 27
    BAD_JSON = 28
    UNAUTHORIZED = 29
    EMPTY_REQUEST = 33
    NOT_ACCEPTABLE = 34
    DATABASE_UNAVAILABLE = 36
    CANCELED_JOB = 37
    REVISION = 43
    REGULAR_FILE_EXPECTED = 2006
    NO_PRESENTATION_CONTEXT = 2015
    NO_C_FIND_AT_REMOTE = 2016
    CANNOT_STORE_INSTANCE = 2018
    CREATE_DICOM_NOT_STRING = 2019
    CREATE_DICOM_OVERRIDE_TAG = 2020
    CREATE_DICOM_USE_CONTENT = 2021
    CREATE_DICOM_NO_PAYLOAD = 2022
    CREATE_DICOM_USE_DATA_URI_SCHEME = 2023
    CREATE_DICOM_BAD_PARENT = 2024
    CREATE_DICOM_PARENT_IS_INSTANCE = 2025
    CANNOT_EXECUTE_LUA = 2031
    LUA_NOT_A_PREDICATE = 2034
    CANNOT_ORDER_SLICES = 2040


_DESCRIPTIONS: dict[ErrorCode, tuple[str, int]] = {
    ErrorCode.INTERNAL_ERROR: ("Internal error", 500),
    ErrorCode.NOT_IMPLEMENTED: ("Not implemented yet", 500),
    ErrorCode.PARAMETER_OUT_OF_RANGE: ("Parameter out of range", 400),
    ErrorCode.NOT_ENOUGH_MEMORY: ("The server hosting Orthanc is running out of memory", 500),
    ErrorCode.BAD_PARAMETER_TYPE: ("Bad type for a parameter", 400),
    ErrorCode.BAD_SEQUENCE_OF_CALLS: ("Bad sequence of calls", 400),
    ErrorCode.INEXISTENT_ITEM: ("Accessing an inexistent item", 404),
    ErrorCode.BAD_REQUEST: ("Bad request", 400),
    ErrorCode.NETWORK_PROTOCOL: ("Error in the network protocol", 500),
    ErrorCode.URI_SYNTAX: ("Badly formatted URI", 400),
    ErrorCode.INEXISTENT_FILE: ("Inexistent file", 404),
    ErrorCode.CANNOT_WRITE_FILE: ("Cannot write to file", 500),
    ErrorCode.BAD_FILE_FORMAT: ("Bad file format", 400),
    ErrorCode.TIMEOUT: ("Timeout", 500),
    ErrorCode.UNKNOWN_RESOURCE: ("Unknown resource", 404),
    ErrorCode.FULL_STORAGE: ("The file storage is full", 507),
    ErrorCode.CORRUPTED_FILE: ("Corrupted file (e.g. inconsistent MD5 hash)", 500),
    ErrorCode.INEXISTENT_TAG: ("Inexistent tag", 404),
    ErrorCode.READ_ONLY: ("Cannot modify a read-only data structure", 403),
    ErrorCode.UNKNOWN_DICOM_TAG: ("Unknown DICOM tag", 500),
    ErrorCode.BAD_JSON: ("Cannot parse a JSON document", 400),
    ErrorCode.UNAUTHORIZED: ("Bad credentials were provided to an HTTP request", 401),
    ErrorCode.EMPTY_REQUEST: ("The request is empty", 400),
    ErrorCode.NOT_ACCEPTABLE: (
        "Cannot send a response which is acceptable according to the Accept HTTP header",
        406,
    ),
    ErrorCode.DATABASE_UNAVAILABLE: (
        "The database is currently not available (probably a transient situation)",
        503,
    ),
    ErrorCode.CANCELED_JOB: ("This job was canceled", 500),
    ErrorCode.REVISION: (
        "A bad revision number was provided, which might indicate conflict between multiple writers",
        409,
    ),
    ErrorCode.REGULAR_FILE_EXPECTED: ("The specified path does not point to a regular file", 500),
    ErrorCode.NO_PRESENTATION_CONTEXT: (
        "DicomUserConnection: No acceptable presentation context for modality",
        500,
    ),
    ErrorCode.NO_C_FIND_AT_REMOTE: (
        "DicomUserConnection: The C-FIND command is not supported by the remote SCP",
        500,
    ),
    ErrorCode.CANNOT_STORE_INSTANCE: ("Cannot store an instance", 500),
    ErrorCode.CREATE_DICOM_NOT_STRING: (
        "Only string values are supported when creating DICOM instances",
        400,
    ),
    ErrorCode.CREATE_DICOM_OVERRIDE_TAG: ("Trying to override a value inherited from a parent module", 400),
    ErrorCode.CREATE_DICOM_USE_CONTENT: ('Use "Content" to inject an image into a new DICOM instance', 400),
    ErrorCode.CREATE_DICOM_NO_PAYLOAD: ("No payload is present for one instance in the series", 400),
    ErrorCode.CREATE_DICOM_USE_DATA_URI_SCHEME: (
        "The payload of the DICOM instance must be specified according to Data URI scheme",
        400,
    ),
    ErrorCode.CREATE_DICOM_BAD_PARENT: (
        "Trying to attach a new DICOM instance to an inexistent resource",
        400,
    ),
    ErrorCode.CREATE_DICOM_PARENT_IS_INSTANCE: (
        "Trying to attach a new DICOM instance to an instance (must be a series, study or patient)",
        400,
    ),
    ErrorCode.CANNOT_EXECUTE_LUA: ("Cannot execute a Lua command", 500),
    ErrorCode.LUA_NOT_A_PREDICATE: (
        "The Lua function is not a predicate (only true/false outputs allowed)",
        500,
    ),
    ErrorCode.CANNOT_ORDER_SLICES: ("Unable to order the slices of the series", 500),
}


def describe(code: ErrorCode) -> str:
    """Orthanc's text for an error code (``OrthancError`` and ``Message``)."""
    return _DESCRIPTIONS[code][0]


def http_status_of(code: ErrorCode) -> int:
    """The HTTP status Orthanc answers for an error code."""
    return _DESCRIPTIONS[code][1]


class OrthancError(Exception):
    """An error answered with Orthanc's JSON error body.

    ``details`` becomes the ``Details`` field (omitted when ``None``);
    ``http_status`` overrides the status Orthanc associates with ``code``.
    """

    def __init__(self, code: ErrorCode, details: str | None = None, http_status: int | None = None):
        super().__init__(details or describe(code))
        self.code = code
        self.details = details
        self.http_status = http_status or http_status_of(code)

    def __reduce__(self):  # crosses the worker pool's process boundary
        return OrthancError, (self.code, self.details, self.http_status)


class BareHttpError(Exception):
    """An error Orthanc answers with a status code and an empty body.

    Orthanc does this for an unknown resource ID at the top of a route
    (``GET /patients/{unknown}``), an unsupported image conversion, and a few
    others listed in ORTHANC-BEHAVIOUR.md.
    """

    def __init__(self, http_status: int, headers: dict[str, str] | None = None):
        super().__init__(f"HTTP {http_status}")
        self.http_status = http_status
        self.headers = headers or {}

    def __reduce__(self):
        return BareHttpError, (self.http_status, self.headers)


class ServerBusyError(Exception):
    """The server takes no more work of this kind for now: answered 503 with ``Retry-After``."""

    def __init__(self, details: str, retry_after: int = 1):
        super().__init__(details)
        self.details = details
        self.retry_after = retry_after

    def __reduce__(self):
        return ServerBusyError, (self.details, self.retry_after)
