"""The transfer syntaxes the DICOM server accepts (``AcceptedTransferSyntaxes``).

Orthanc 1.10.1 knows the transfer syntaxes below (in this order, which is
the order of ``GET /tools/accepted-transfer-syntaxes``) and accepts the ones
matching any pattern of the option, ``*`` and ``?`` being wildcards. The
default pattern ``1.2.840.10008.1.*`` accepts all of them.
"""

import re
from collections.abc import Iterable

import msgspec

from fastpacs.errors import ErrorCode, OrthancError

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

UNCOMPRESSED = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN)
"""Transfer syntaxes pynetdicom can convert a decoded dataset between."""

KNOWN_TRANSFER_SYNTAXES = (
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    *(f"1.2.840.10008.1.2.4.{number}" for number in range(50, 67)),  # JPEG processes 1-29
    "1.2.840.10008.1.2.4.70",  # JPEG lossless, first-order prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    *(f"1.2.840.10008.1.2.4.{number}" for number in range(90, 96)),  # JPEG 2000, JPIP
    *(f"1.2.840.10008.1.2.4.{number}" for number in range(100, 109)),  # MPEG-2, MPEG-4, HEVC
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.6.1",  # RFC 2557 MIME encapsulation
    "1.2.840.10008.1.2.6.2",  # XML encoding
)

DEFAULT_PATTERNS = ("1.2.840.10008.1.*",)


def _pattern(text: str) -> re.Pattern[str]:
    parts = [".*" if char == "*" else "." if char == "?" else re.escape(char) for char in text]
    return re.compile("".join(parts))


def matching_transfer_syntaxes(patterns: Iterable[str]) -> list[str]:
    """The known transfer syntaxes matched by any pattern, in Orthanc's order."""
    compiled = [_pattern(pattern) for pattern in patterns]
    return [uid for uid in KNOWN_TRANSFER_SYNTAXES if any(regex.fullmatch(uid) for regex in compiled)]


def parse_patterns(body: bytes) -> list[str]:
    """A ``PUT /tools/accepted-transfer-syntaxes`` body: a JSON string or array of strings (patterns)."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from None
    if isinstance(document, str):
        return [document]
    if isinstance(document, list) and all(isinstance(item, str) for item in document):
        return document
    raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
