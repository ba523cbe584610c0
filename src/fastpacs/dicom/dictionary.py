"""Names and VRs of DICOM attributes, as Orthanc writes them in JSON.

Orthanc names attributes with DCMTK's data dictionary: public keywords
(``RETIRED_`` prefixed when retired), ACR-NEMA names, and vendor private
names keyed by private creator. The same data, extracted by
``scripts/build_dictionary.py``, ships as ``dcmtk_dictionary.json.gz``.
Private creator elements are named ``PrivateCreator``; attributes no
dictionary knows are ``Unknown Tag & Data``.
"""

import gzip
import json
import re
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from fastpacs.dicom.main_tags import MAIN_TAGS
from fastpacs.errors import ErrorCode, OrthancError

UNKNOWN_NAME = "Unknown Tag & Data"
UNSIGNED_OFFSET = "up"
PRIVATE_CREATOR_NAME = "PrivateCreator"
Entry = tuple[str, str]
"""(name, VR)."""


def is_private(tag: int) -> bool:
    return bool((tag >> 16) & 1)


def is_private_creator(tag: int) -> bool:
    return is_private(tag) and 0x0010 <= (tag & 0xFFFF) <= 0x00FF


def private_creator_tag(tag: int) -> int:
    """The tag of the creator element that reserves the block of a private element."""
    return (tag & 0xFFFF0000) | ((tag >> 8) & 0xFF)


@cache
def _dictionary() -> dict[str, Any]:
    data = resources.files("fastpacs.dicom").joinpath("dcmtk_dictionary.json.gz").read_bytes()
    return json.loads(gzip.decompress(data))


@cache
def _public_ranges() -> list[list[Any]]:
    """The repeating-group entries; of two for the same tags (an ACR-NEMA name and the DICOM one),
    the later, which replaces the other when DCMTK loads its dictionary (``RETIRED_OverlayComments``
    for (60xx,4000), not ``ACR_NEMA_OverlayComments``)."""
    ranges: dict[tuple[int, ...], list[Any]] = {}
    for entry in _dictionary()["public_ranges"]:
        ranges[tuple(entry[:5])] = entry
    return list(ranges.values())


def _group_matches(group: int, low: int, high: int, parity: str) -> bool:
    if not low <= group <= high:
        return False
    return parity == "u" or (parity == "o") == bool(group & 1)


@cache
def _main_tag_names() -> dict[int, str]:
    """Orthanc names its main DICOM tags itself (``OtherPatientIDs``, retired in DCMTK's dictionary)."""
    return {tag: keyword for tags in MAIN_TAGS.values() for tag, keyword in tags}


@lru_cache(maxsize=16384)
def public_entry(tag: int) -> Entry | None:
    dictionary = _dictionary()
    found = dictionary["public"].get(f"{tag:08x}")
    main_name = _main_tag_names().get(tag)
    if main_name is not None:
        return main_name, found[1] if found else "UN"
    if found:
        return found[0], found[1]
    group, element = tag >> 16, tag & 0xFFFF
    for group_low, group_high, parity, element_low, element_high, name, vr in _public_ranges():
        if _group_matches(group, group_low, group_high, parity) and element_low <= element <= element_high:
            return name, vr
    return None


@lru_cache(maxsize=16384)
def private_entry(tag: int, creator: str) -> Entry | None:
    dictionary = _dictionary()
    group, element = tag >> 16, tag & 0xFFFF
    for key_element in (element, element & 0xFF):
        found = dictionary["private"].get(f"{group:04x}|{creator}|{key_element:04x}")
        if found:
            return found[0], found[1]
    for group_low, group_high, parity, entry_creator, entry_element, name, vr in dictionary["private_ranges"]:
        if (
            entry_creator == creator
            and _group_matches(group, group_low, group_high, parity)
            and entry_element in (element, element & 0xFF)
        ):
            return name, vr
    return None


GENERIC_GROUP_LENGTH = ("GenericGroupLength", "UL")
PRIVATE_GROUP_LENGTH = ("PrivateGroupLength", "UL")
_NAMED_GROUP_LENGTHS = (0x0000, 0x0002)
"""Groups whose length element has a name of its own (command, file meta)."""


@lru_cache(maxsize=65536)
def _entry(tag: int, creator: str | None) -> Entry | None:
    if tag & 0xFFFF == 0 and tag >> 16 not in _NAMED_GROUP_LENGTHS:
        return PRIVATE_GROUP_LENGTH if is_private(tag) else GENERIC_GROUP_LENGTH
    if not is_private(tag):
        return public_entry(tag)
    if is_private_creator(tag):
        return PRIVATE_CREATOR_NAME, "LO"
    return private_entry(tag, creator) if creator else None


def attribute_name(tag: int, creator: str | None) -> str:
    """Orthanc's ``Name`` of an attribute (``creator``: the private creator of its block)."""
    entry = _entry(tag, creator)
    return entry[0] if entry else UNKNOWN_NAME


def dictionary_vr(tag: int, creator: str | None) -> str:
    """The VR to read an implicit-VR element with; ``UN`` when no dictionary knows it."""
    entry = _entry(tag, creator)
    if entry is None or entry[1] == "NONE":
        return "UN"
    return "UL" if entry[1] == UNSIGNED_OFFSET else entry[1]


def is_unsigned_offset(tag: int) -> bool:
    """An offset of a DICOMDIR record (DCMTK's VR "up", UL in files): Orthanc shows no value for these."""
    entry = _entry(tag, None)
    return entry is not None and entry[1] == UNSIGNED_OFFSET


_EIGHT_HEX_DIGITS = re.compile(r"[0-9A-Fa-f]{8}")
_SCANF_TAG = re.compile(r"\s*[+-]?(?:0[xX])?([0-9A-Fa-f]+)[,-]\s*[+-]?(?:0[xX])?([0-9A-Fa-f]+)")


@cache
def _tags_by_name() -> dict[str, int]:
    """DCMTK's attribute names (public dictionary, then repeating groups) → tag."""
    dictionary = _dictionary()
    names: dict[str, int] = {}
    for tag, (name, _vr) in dictionary["public"].items():
        names.setdefault(name, int(tag, 16))
    for group_low, _high, _parity, element_low, _element_high, name, _vr in _public_ranges():
        names.setdefault(name, (group_low << 16) | element_low)
    return names


def parse_tag(text: str) -> int:
    """A tag written as Orthanc accepts one everywhere (``00100010``, ``0010,0010``,
    ``0010-0010``, DCMTK's name ``PatientName``); Orthanc's "Unknown DICOM tag" otherwise."""
    if _EIGHT_HEX_DIGITS.fullmatch(text):
        return int(text, 16)
    scanned = _SCANF_TAG.match(text)
    if scanned is not None:
        return ((int(scanned[1], 16) & 0xFFFF) << 16) | (int(scanned[2], 16) & 0xFFFF)
    tag = _tags_by_name().get(text)
    if tag is None:
        raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG)
    return tag
