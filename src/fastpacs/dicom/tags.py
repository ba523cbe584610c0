"""An instance's tags in Orthanc's three JSON forms, computed once at ingest.

Full form (``/tags``): ``{"gggg,eeee": {"Name", "Type", "Value"[, "PrivateCreator"]}}``
where Type is ``String`` (every non-binary value, as text), ``Sequence``
(Value: list of items in full form), ``Null`` (binary VRs) or ``TooLong``
(more than 256 bytes). Simplified form (``?simplify``): names as keys,
strings, lists of items, ``null``; when names collide the last element wins.
Short form (``?short``): tags as keys, values as in the simplified form.
"""

from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from fastpacs.dicom.dictionary import (
    attribute_name,
    dictionary_vr,
    is_private,
    is_private_creator,
    private_creator_tag,
)
from fastpacs.dicom.values import STRING_VRS, TOO_LONG, format_value, python_encodings

TagJson = dict[str, Any]

DATA_SET_TRAILING_PADDING = 0xFFFCFFFC
SPECIFIC_CHARACTER_SET = 0x00080005
PIXEL_REPRESENTATION = 0x00280103


def tag_key(tag: int) -> str:
    return f"{tag >> 16:04x},{tag & 0xFFFF:04x}"


class TagWalker:
    """Builds the full form of a dataset (and of its sequence items, recursively)."""

    def __init__(self, encodings: list[str], little_endian: bool, default_character_set: str):
        self.encodings = encodings
        self.little_endian = little_endian
        self.default_character_set = default_character_set
        self.ignore_length: frozenset[int] = frozenset()
        """Tags whose long values are given in full instead of ``TooLong``."""

    def full(self, dataset: Dataset, encodings: list[str] | None = None) -> TagJson:
        encodings = encodings or self.encodings
        if SPECIFIC_CHARACTER_SET in dataset:
            own = self._raw_text(dataset, SPECIFIC_CHARACTER_SET)
            if own:
                encodings = python_encodings(own, self.default_character_set)
        answer: TagJson = {}
        for key in dataset.keys():  # noqa: SIM118 - iterating a Dataset would convert every element
            tag = int(key)  # pydicom's BaseTag makes every comparison a Python call
            if tag == DATA_SET_TRAILING_PADDING:
                continue
            answer[tag_key(tag)] = self._element(dataset, tag, encodings)
        return answer

    @staticmethod
    def _raw_text(dataset: Dataset, tag: int) -> str:
        value = dataset.get_item(tag).value
        if isinstance(value, bytes):
            return value.decode("latin-1").rstrip(" \x00")
        if isinstance(value, str) or value is None:
            return value or ""
        return "\\".join(str(item) for item in value)  # pydicom's MultiValue

    def _creator(self, dataset: Dataset, tag: int, encodings: list[str]) -> str | None:
        creator_tag = private_creator_tag(tag)
        if creator_tag not in dataset:
            return None
        element = dataset.get_item(creator_tag)
        raw = element.value
        if isinstance(raw, bytes):
            text = format_value(raw, "LO", encodings, self.little_endian)
            return text if isinstance(text, str) else None
        return str(raw)

    def _element(self, dataset: Dataset, tag: int, encodings: list[str]) -> TagJson:
        element = dataset.get_item(tag)
        creator = None
        if is_private(tag) and not is_private_creator(tag) and tag & 0xFFFF:
            creator = self._creator(dataset, tag, encodings)
        entry: TagJson = {"Name": attribute_name(tag, creator)}
        if creator is not None:
            entry["PrivateCreator"] = creator
        vr = element.VR if element.VR else dictionary_vr(tag, creator)
        if vr == "SQ":
            items = dataset[tag].value or []
            entry["Type"] = "Sequence"
            entry["Value"] = [self.full(item, encodings) for item in items]
            return entry
        raw = element.value if isinstance(element, RawDataElement) else _converted_bytes(element)
        if vr == "US or SS":
            vr = "SS" if self._pixel_representation(dataset) == 1 else "US"
        if raw is None and not isinstance(element, RawDataElement):
            entry["Type"], entry["Value"] = "String", _converted_text(element)
            return entry
        strip = True
        if (
            vr == "UN"
            and (creator is None or is_private_creator(tag))
            and dictionary_vr(tag, None) in STRING_VRS
        ):
            # Orthanc reads a UN element of a known text attribute as text, padding included.
            vr, strip = dictionary_vr(tag, None), False
        text = format_value(
            raw, vr, encodings, self.little_endian, limit=tag not in self.ignore_length, strip=strip
        )
        if text is None:
            entry["Type"], entry["Value"] = "Null", None
        elif text is TOO_LONG:
            entry["Type"], entry["Value"] = "TooLong", None
        else:
            entry["Type"], entry["Value"] = "String", text
        return entry

    def _pixel_representation(self, dataset: Dataset) -> int:
        if PIXEL_REPRESENTATION not in dataset:
            return 0
        raw = dataset.get_item(PIXEL_REPRESENTATION).value
        if isinstance(raw, bytes) and len(raw) >= 2:
            return int.from_bytes(raw[:2], "little" if self.little_endian else "big")
        return int(raw or 0)


def _converted_bytes(element: Any) -> bytes | None:
    """The raw bytes of an element pydicom already converted, when it kept bytes."""
    value = element.value
    return value if isinstance(value, bytes) else None


def _converted_text(element: Any) -> str:
    """Orthanc's text for an element pydicom converted to Python values (file meta group,
    SpecificCharacterSet)."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value).rstrip(" \x00")
    return "\\".join(str(item) for item in value)  # pydicom's MultiValue


def simplify(full: TagJson) -> TagJson:
    """The simplified form (``?simplify``) of a full form."""
    answer: TagJson = {}
    for entry in full.values():
        answer[entry["Name"]] = _simple_value(entry)
    return answer


def shorten(full: TagJson) -> TagJson:
    """The short form (``?short``) of a full form."""
    return {key: _short_value(entry) for key, entry in full.items()}


def _simple_value(entry: TagJson) -> Any:
    if entry["Type"] == "Sequence":
        return [simplify(item) for item in entry["Value"]]
    return entry["Value"]


def _short_value(entry: TagJson) -> Any:
    if entry["Type"] == "Sequence":
        return [shorten(item) for item in entry["Value"]]
    return entry["Value"]
