"""The transfer syntaxes the DICOM server accepts (``AcceptedTransferSyntaxes``).

Orthanc 1.10.1 knows the transfer syntaxes below (in this order, which is
the order of ``GET /tools/accepted-transfer-syntaxes``) and accepts the ones
matching any pattern of the option, ``*`` and ``?`` being wildcards. The
default pattern ``1.2.840.10008.1.*`` accepts all of them.
"""

import re
from collections.abc import Iterable

from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.json_body import NotJsonError, read_json

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
    """A ``PUT /tools/accepted-transfer-syntaxes`` body: a JSON string or array of strings (patterns).

    A body that is not JSON is one pattern, as Orthanc reads it (``1.2.840.10008.1.2.*``).
    """
    try:
        document = read_json(body)
    except NotJsonError:
        return [body.decode("utf-8", errors="replace")]
    if isinstance(document, str):
        return [document]
    if isinstance(document, list) and all(isinstance(item, str) for item in document):
        return document
    raise OrthancError(ErrorCode.BAD_FILE_FORMAT)


LISTED_ONLY = ("1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2")
"""MIME encapsulation and XML encoding: listed as accepted, but no association is accepted in them
(observed on Orthanc 1.10.1, whose DICOM toolkit has no such network transfer syntax)."""

_JPEG = tuple(f"1.2.840.10008.1.2.4.{number}" for number in range(50, 67))

TRANSFER_SYNTAX_GROUPS: dict[str, tuple[str, ...]] = {
    "DeflatedTransferSyntaxAccepted": (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,),
    "JpegTransferSyntaxAccepted": (*_JPEG, "1.2.840.10008.1.2.4.70"),
    "Jpeg2000TransferSyntaxAccepted": tuple(f"1.2.840.10008.1.2.4.{number}" for number in range(90, 94)),
    "JpegLosslessTransferSyntaxAccepted": ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"),
    "JpipTransferSyntaxAccepted": ("1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95"),
    "Mpeg2TransferSyntaxAccepted": ("1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101"),
    "RleTransferSyntaxAccepted": ("1.2.840.10008.1.2.5",),
    "Mpeg4TransferSyntaxAccepted": tuple(f"1.2.840.10008.1.2.4.{number}" for number in range(102, 107)),
    "H265TransferSyntaxAccepted": ("1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"),
}
"""Orthanc's groups of transfer syntaxes, as its options name them (observed on Orthanc 1.10.1:
its "JpegLossless" group is JPEG-LS; JPEG lossless proper belongs to the "Jpeg" group)."""


def accepted_at_start(patterns: Iterable[str], groups: dict[str, bool]) -> list[str]:
    """The transfer syntaxes accepted at start-up: those ``AcceptedTransferSyntaxes`` matches, then
    each group option set in the configuration adds its group (true) or removes it (false)."""
    accepted = set(matching_transfer_syntaxes(patterns))
    for option, enabled in groups.items():
        if enabled:
            accepted.update(TRANSFER_SYNTAX_GROUPS[option])
        else:
            accepted.difference_update(TRANSFER_SYNTAX_GROUPS[option])
    return [uid for uid in KNOWN_TRANSFER_SYNTAXES if uid in accepted]
