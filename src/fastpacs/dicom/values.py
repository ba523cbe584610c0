"""Element values as Orthanc writes them in JSON: one string per element.

Orthanc renders every non-binary value as text: strings decoded from the
file's character set with trailing padding removed, binary numbers in
decimal (floating point like C's ``%.17g``), attribute tags as ``gggg,eeee``,
multiple values joined by a backslash (attribute tags excepted: Orthanc shows
the first one only). Binary VRs have no text form, and
values whose text takes more than :data:`MAX_STRING_LENGTH` bytes of UTF-8
are "too long": the text as shown, padding stripped, numbers formatted, so a
Latin-1 value of 200 accented letters is too long and a tag list is not.

The functions work on the raw value bytes, so that the result depends on
the file alone and not on how a parser chose to convert the value.
"""

import struct
from collections.abc import Sequence

from pydicom.charset import convert_encodings, decode_bytes

MAX_STRING_LENGTH = 256
"""Longest text (UTF-8 bytes) Orthanc shows; longer ones are ``TooLong``."""

BINARY_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW", "SV", "UV", "up"}
)
"""VRs without a text form in Orthanc 1.10.1: binary data, and what its DCMTK 3.6.7 gives no string for
(the 64-bit SV and UV, and "up", DCMTK's unsigned offsets of DICOMDIR records)."""
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})
STRING_VRS = TEXT_VRS | frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
"""VRs whose bytes are in the character set named by SpecificCharacterSet."""

_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
_TEXT_DELIMITERS = {0x5C, 0x0D, 0x0A, 0x09, 0x0C}
_UTF8 = ["UTF8"]
"""pydicom's encodings of ``ISO_IR 192``."""
_PERSON_NAME_DELIMITERS = {0x5C, 0x5E, 0x3D}

DEFAULT_ENCODINGS = {
    # Orthanc's names for DefaultEncoding → DICOM defined terms of SpecificCharacterSet.
    "Ascii": "ISO_IR 6",
    "Utf8": "ISO_IR 192",
    "Latin1": "ISO_IR 100",
    "Latin2": "ISO_IR 101",
    "Latin3": "ISO_IR 109",
    "Latin4": "ISO_IR 110",
    "Latin5": "ISO_IR 148",
    "Cyrillic": "ISO_IR 144",
    "Arabic": "ISO_IR 127",
    "Greek": "ISO_IR 126",
    "Hebrew": "ISO_IR 138",
    "Thai": "ISO_IR 166",
    "Japanese": "ISO_IR 13",
    "Chinese": "GB18030",
    "JapaneseKanji": "ISO 2022 IR 87",
    "Korean": "ISO 2022 IR 149",
    "SimplifiedChinese": "ISO 2022 IR 58",
}


class TooLong:
    """Marker for a value longer than :data:`MAX_STRING_LENGTH`."""


TOO_LONG = TooLong()


def python_encodings(specific_character_set: str | Sequence[str] | None, default: str) -> list[str]:
    """Python codecs for a SpecificCharacterSet value; ``default`` (a DICOM term) when absent."""
    if not specific_character_set:
        specific_character_set = default
    if isinstance(specific_character_set, str):
        terms: list[str] = [term.strip() for term in specific_character_set.split("\\")]
    else:
        terms = [term.strip() for term in specific_character_set]
    if not terms[0]:
        # An empty first value with code extensions after it is the default repertoire (ASCII).
        terms[0] = "ISO 2022 IR 6" if len(terms) > 1 else default
    return convert_encodings(terms)


def _strip(text: str) -> str:
    return text.rstrip(" \x00")


def _keep(text: str) -> str:
    """Padding spaces kept, NUL bytes dropped."""
    return text.rstrip("\x00")


def format_value(
    raw: bytes | None,
    vr: str,
    encodings: list[str],
    little_endian: bool = True,
    *,
    limit: bool = True,
    strip: bool = True,
) -> str | TooLong | None:
    """Orthanc's text for one element value, ``None`` for binary VRs, or :data:`TOO_LONG`.

    ``limit=False`` gives long values in full (Orthanc's ``?ignore-length``);
    ``strip=False`` keeps padding spaces (Orthanc does for text read from UN elements).
    """
    finish = _strip if strip else _keep
    if vr in BINARY_VRS or vr == "SQ":
        return None
    if not raw:
        return ""
    number_format = _NUMBER_FORMATS.get(vr)
    if number_format is not None:
        if limit and len(raw) // struct.calcsize("<" + number_format) > MAX_STRING_LENGTH // 2:
            return TOO_LONG  # every value takes a digit and a delimiter at least: not worth formatting
        text = _format_numbers(raw, number_format, little_endian)
    elif vr == "AT":
        text = _format_tags(raw, little_endian)
    elif vr in TEXT_VRS and encodings == _UTF8:
        text = finish(raw.decode("utf-8", "ignore"))  # Orthanc drops what is not UTF-8 (pydicom: U+FFFD)
    elif vr in TEXT_VRS:
        delimiters = _PERSON_NAME_DELIMITERS if vr == "PN" else _TEXT_DELIMITERS
        text = finish(decode_bytes(raw, encodings, delimiters))
    else:
        text = finish(raw.decode("latin-1"))
    if limit and _utf8_length(text) > MAX_STRING_LENGTH:
        return TOO_LONG
    return text


def _utf8_length(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", errors="surrogatepass"))


def _format_numbers(raw: bytes, code: str, little_endian: bool) -> str:
    size = struct.calcsize("<" + code)
    count = len(raw) // size
    numbers = struct.unpack(("<" if little_endian else ">") + code * count, raw[: count * size])
    if code in "fd":
        return "\\".join(f"{number:.17g}" for number in numbers)
    return "\\".join(str(number) for number in numbers)


def _format_tags(raw: bytes, little_endian: bool) -> str:
    """An AT value; Orthanc shows its first attribute tag only."""
    if len(raw) < 4:
        return ""
    group, element = struct.unpack(("<" if little_endian else ">") + "HH", raw[:4])
    return f"{group:04x},{element:04x}"
