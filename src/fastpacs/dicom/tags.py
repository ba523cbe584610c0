"""An instance's tags in Orthanc's three JSON forms, computed once at ingest.

Full form (``/tags``): ``{"gggg,eeee": {"Name", "Type", "Value"[, "PrivateCreator"]}}``
where Type is ``String`` (every non-binary value, as text), ``Sequence``
(Value: list of items in full form), ``Null`` (binary VRs) or ``TooLong``
(text of more than 256 bytes). Simplified form (``?simplify``): names as keys,
strings, lists of items, ``null``; when names collide the last element wins.
Short form (``?short``): tags as keys, values as in the simplified form.
"""

from functools import lru_cache
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from fastpacs.dicom.dictionary import (
    UNKNOWN_NAME,
    UNSIGNED_OFFSET,
    attribute_name,
    dictionary_vr,
    is_private_creator,
    is_unsigned_offset,
    private_creator_tag,
    user_public_tags,
)
from fastpacs.dicom.values import STRING_VRS, TOO_LONG, format_value, python_encodings

TagJson = dict[str, Any]

DATA_SET_TRAILING_PADDING = 0xFFFCFFFC
SPECIFIC_CHARACTER_SET = 0x00080005
PIXEL_REPRESENTATION = 0x00280103


@lru_cache(maxsize=65536)
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
        self.named_by_user_dictionary = False
        """Whether a name or VR met so far is one a user dictionary could change: that of a private
        attribute, of a public one DCMTK does not know, or of one the user dictionary declares."""
        self._user_public_tags = user_public_tags()

    def full(self, dataset: Dataset, encodings: list[str] | None = None) -> TagJson:
        # Dataset.items() gives the elements as read (RawDataElement), keyed by pydicom's
        # BaseTag; plain ints make every comparison below a C call instead of a Python one.
        elements = {int(tag): element for tag, element in dataset.items()}
        encodings = encodings or self.encodings
        if SPECIFIC_CHARACTER_SET in elements:
            own = _raw_text(elements[SPECIFIC_CHARACTER_SET])
            if own:
                encodings = python_encodings(own, self.default_character_set)
        context = _DatasetContext(dataset, elements, encodings)
        answer: TagJson = {}
        for tag, element in elements.items():
            if tag != DATA_SET_TRAILING_PADDING:
                answer[tag_key(tag)] = self._element(context, tag, element)
        return answer

    def _creator(self, context: "_DatasetContext", tag: int) -> str | None:
        """The private creator of a private element's block (looked up once per block)."""
        creator_tag = private_creator_tag(tag)
        if creator_tag in context.creators:
            return context.creators[creator_tag]
        element = context.elements.get(creator_tag)
        creator = None
        if element is not None:
            raw = element.value
            if isinstance(raw, bytes):
                text = format_value(raw, "LO", context.encodings, self.little_endian)
                creator = text if isinstance(text, str) else None
            else:
                creator = str(raw)
        context.creators[creator_tag] = creator
        return creator

    def _element(self, context: "_DatasetContext", tag: int, element: Any) -> TagJson:
        creator = None
        if tag & 0x10000 and tag & 0xFFFF and not is_private_creator(tag):  # private data element
            creator = self._creator(context, tag)
            self.named_by_user_dictionary = True
        name = attribute_name(tag, creator)
        if name == UNKNOWN_NAME or tag in self._user_public_tags:
            self.named_by_user_dictionary = True
        entry: TagJson = {"Name": name}
        vr = element.VR if element.VR else dictionary_vr(tag, creator)
        if is_unsigned_offset(tag):
            vr = UNSIGNED_OFFSET
        if vr == "SQ":
            # Orthanc names the creator of private leaves only, not of private sequences.
            items = context.dataset[tag].value or []
            entry["Type"] = "Sequence"
            entry["Value"] = [self.full(item, context.encodings) for item in items]
            return entry
        if creator is not None:
            entry["PrivateCreator"] = creator
        is_raw = isinstance(element, RawDataElement)
        raw = element.value if is_raw else _converted_bytes(element)
        if vr == "US or SS":
            vr = "SS" if self._pixel_representation(context) == 1 else "US"
        if raw is None and not is_raw:
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
            raw, vr, context.encodings, self.little_endian, limit=tag not in self.ignore_length, strip=strip
        )
        if text is None:
            entry["Type"], entry["Value"] = "Null", None
        elif text is TOO_LONG:
            entry["Type"], entry["Value"] = "TooLong", None
        else:
            entry["Type"], entry["Value"] = "String", text
        return entry

    def _pixel_representation(self, context: "_DatasetContext") -> int:
        element = context.elements.get(PIXEL_REPRESENTATION)
        if element is None:
            return 0
        raw = element.value
        if isinstance(raw, bytes) and len(raw) >= 2:
            return int.from_bytes(raw[:2], "little" if self.little_endian else "big")
        return int(raw or 0)


class _DatasetContext:
    """One dataset being walked: its elements by tag, its character set, its private creators."""

    __slots__ = ("creators", "dataset", "elements", "encodings")

    def __init__(self, dataset: Dataset, elements: dict[int, Any], encodings: list[str]):
        self.dataset = dataset
        self.elements = elements
        self.encodings = encodings
        self.creators: dict[int, str | None] = {}


def _raw_text(element: Any) -> str:
    """An element's text without charset handling (for SpecificCharacterSet itself)."""
    value = element.value
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip(" \x00")
    if isinstance(value, str) or value is None:
        return value or ""
    return "\\".join(str(item) for item in value)  # pydicom's MultiValue


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
    if isinstance(value, MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value).rstrip(" \x00")  # str, numbers, PersonName, UID...


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
