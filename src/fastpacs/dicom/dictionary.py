"""Names and VRs of DICOM attributes, as Orthanc writes them in JSON.

Orthanc names attributes with DCMTK's data dictionary: public keywords
(``RETIRED_`` prefixed when retired), ACR-NEMA names, and vendor private
names keyed by private creator. The same data, extracted by
``scripts/build_dictionary.py``, ships as ``dcmtk_dictionary.json.gz``.
Private creator elements are named ``PrivateCreator``; attributes no
dictionary knows are ``Unknown Tag & Data``.

Orthanc's ``Dictionary`` option adds a site's own attributes, and
``LoadPrivateDictionary: false`` drops DCMTK's private names: both make a
:class:`UserDictionary`, which every process of the server (the server and
its workers) installs (:func:`install`) before it reads a file or a tag name.
"""

import gzip
import hashlib
import json
import re
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import msgspec
from pydicom import datadict

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


class UserEntry(msgspec.Struct, frozen=True, array_like=True):
    """One attribute of the ``Dictionary`` option."""

    tag: int
    """As declared: for a private attribute, the element's low byte only (any block), or the whole
    element (that block only)."""
    vr: str
    name: str
    creator: str | None = None


class UserDictionary(msgspec.Struct, frozen=True, array_like=True):
    """The attributes a site declares (``Dictionary``) and whether DCMTK's private names are known
    (``LoadPrivateDictionary``)."""

    entries: tuple[UserEntry, ...] = ()
    load_private: bool = True
    default_creator: str = ""
    """``DefaultPrivateCreator``: the creator of the private tags a request names without one."""

    @property
    def fingerprint(self) -> str | None:
        """Names the attributes known (``None``: DCMTK's alone), to tell which ones stored tags were read
        with; the default creator plays no part in reading files."""
        if not self.entries and self.load_private:
            return None
        return hashlib.sha256(msgspec.msgpack.encode((self.entries, self.load_private))).hexdigest()[:16]


class _Installed:
    """The user dictionary this process uses, in the shapes the lookups want."""

    def __init__(self) -> None:
        self.dictionary = UserDictionary()
        self.fingerprint: str | None = None
        self.public: dict[int, Entry] = {}
        self.private: dict[tuple[int, str | None, int], Entry] = {}
        """(group, creator, element as declared) → entry."""


_installed = _Installed()


def install(user: UserDictionary) -> None:
    """Use ``user`` in this process from now on (in pydicom too: it reads implicit-VR files with it)."""
    _installed.dictionary = user
    _installed.fingerprint = user.fingerprint
    _installed.public = {}
    _installed.private = {}
    private_for_pydicom: dict[str, dict[int, tuple[str, str, str, str]]] = {}
    for entry in user.entries:
        group, element = entry.tag >> 16, entry.tag & 0xFFFF
        if is_private(entry.tag):
            _installed.private[(group, entry.creator, element)] = (entry.name, entry.vr)
            if entry.creator is not None:
                private_for_pydicom.setdefault(entry.creator, {})[entry.tag] = (
                    entry.vr,
                    "1-n",
                    entry.name,
                    "",
                )
        else:
            _installed.public[entry.tag] = (entry.name, entry.vr)
    if _installed.public:
        datadict.add_dict_entries(
            {
                tag: (vr, "1-n", name, "", _pydicom_keyword(name))
                for tag, (name, vr) in _installed.public.items()
            }
        )
    for creator, entries in private_for_pydicom.items():
        datadict.add_private_dict_entries(creator, entries)
    for cached in (public_entry, private_entry, _entry, _tags_by_name):
        cached.cache_clear()


def _pydicom_keyword(name: str) -> str:
    """The nickname as pydicom keyword, unless it is not an identifier or pydicom has it already: a
    site naming an attribute ``PatientName`` must not move pydicom's ``Dataset.PatientName``."""
    return name if name.isidentifier() and datadict.tag_for_keyword(name) is None else ""


def default_private_creator() -> str:
    """``DefaultPrivateCreator`` of the installed dictionary (empty when not set)."""
    return _installed.dictionary.default_creator


def user_public_tags() -> dict[int, Entry]:
    """The public attributes the installed dictionary declares (DCMTK's dictionary does not know them)."""
    return _installed.public


def installed_fingerprint() -> str | None:
    """The :attr:`UserDictionary.fingerprint` of the installed dictionary."""
    return _installed.fingerprint


@lru_cache(maxsize=16384)
def public_entry(tag: int) -> Entry | None:
    return _installed.public.get(tag) or _dcmtk_public_entry(tag)


@lru_cache(maxsize=16384)
def _dcmtk_public_entry(tag: int) -> Entry | None:
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
def private_entry(tag: int, creator: str | None) -> Entry | None:
    """The entry of a private attribute whose block ``creator`` reserved (``None``: no creator element)."""
    group, element = tag >> 16, tag & 0xFFFF
    for key_element in (element, element & 0xFF):
        user = _installed.private.get((group, creator, key_element))
        if user is not None:
            return user
    if creator is None or not _installed.dictionary.load_private:
        return None
    return _dcmtk_private_entry(tag, creator)


@lru_cache(maxsize=16384)
def _dcmtk_private_entry(tag: int, creator: str) -> Entry | None:
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
    return private_entry(tag, creator or None)


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
    """Attribute names → tag: DCMTK's public dictionary, its repeating groups, the user dictionary,
    then DCMTK's private dictionary unless ``LoadPrivateDictionary`` is false."""
    dictionary = _dictionary()
    names: dict[str, int] = {}
    for tag, (name, _vr) in dictionary["public"].items():
        names.setdefault(name, int(tag, 16))
    for group_low, _high, _parity, element_low, _element_high, name, _vr in _public_ranges():
        names.setdefault(name, (group_low << 16) | element_low)
    for entry in _installed.dictionary.entries:
        names.setdefault(entry.name, entry.tag)
    if _installed.dictionary.load_private:
        for name, tag in _private_tags_by_name().items():
            names.setdefault(name, tag)
    return names


@cache
def _private_tags_by_name() -> dict[str, int]:
    """The names of DCMTK's private dictionary that name one tag, as Orthanc reads them: the group and
    the element as the dictionary gives it (its low byte: ``VersionOfHeaderStructure`` is (0029,0026)).

    Of the 73 names several private tags share, Orthanc takes one in the order of DCMTK's hash table
    (``LowerRangeOfPixels``: the 9th of 10; ``StudyType``: the first of 2; ``PixelOffset``: the last
    of 2), which fastpacs cannot know: they stay unknown.
    """
    dictionary = _dictionary()
    tags: dict[str, set[int]] = {}
    for key, (name, _vr) in dictionary["private"].items():
        group, _creator, element = key.split("|")
        tags.setdefault(name, set()).add((int(group, 16) << 16) | int(element, 16))
    for group_low, _high, _parity, _creator, element, name, _vr in dictionary["private_ranges"]:
        tags.setdefault(name, set()).add((group_low << 16) | element)
    return {name: next(iter(found)) for name, found in tags.items() if len(found) == 1}


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


ORTHANC_VRS = frozenset(
    {
        "AE",
        "AS",
        "AT",
        "CS",
        "DA",
        "DS",
        "DT",
        "FD",
        "FL",
        "IS",
        "LO",
        "LT",
        "OB",
        "OD",
        "OF",
        "OL",
        "OW",
        "PN",
        "SH",
        "SL",
        "SQ",
        "SS",
        "ST",
        "TM",
        "UC",
        "UI",
        "UL",
        "UN",
        "UR",
        "US",
        "UT",
    }
)
"""The VRs Orthanc 1.10.1 accepts in its ``Dictionary`` option (not OV, SV, UV)."""
_OUT_OF_RANGE = "Parameter out of range"
_ALREADY_EXISTS = "Cannot override the value of a tag that already exists"


def user_dictionary(declared: dict[str, Any], load_private: bool, default_creator: str) -> UserDictionary:
    """The ``Dictionary`` option checked as Orthanc 1.10.1 checks it, which refuses to start otherwise;
    ``ValueError`` with Orthanc's message."""
    entries = []
    for key, definition in declared.items():
        try:
            tag = parse_tag(key)
        except OrthancError as error:
            raise ValueError(f"Unknown DICOM tag: {key!r} in the Dictionary option") from error
        entry = _checked_entry(key, tag, definition)
        if entry.creator is not None:  # DCMTK's entries: the installed ones pass again
            known = _dcmtk_private_entry(tag, entry.creator) if load_private else None
        else:
            known = _dcmtk_public_entry(tag) if not is_private(tag) else None
        if known is not None:
            raise ValueError(
                f"{_ALREADY_EXISTS}: Cannot register twice the tag ({tag >> 16:04x},{tag & 0xFFFF:04x}), "
                f'whose symbolic name is "{entry.name}"'
            )
        entries.append(entry)
    return UserDictionary(tuple(entries), load_private, default_creator)


def _checked_entry(key: str, tag: int, definition: Any) -> UserEntry:
    """One entry: ``[VR, name, min multiplicity (>= 1), max multiplicity (0: any), private creator]``,
    the last three optional (Orthanc refuses an entry of two items, though)."""
    kinds = (str, str, int, int, str)
    if (
        not isinstance(definition, list)
        or not 2 <= len(definition) <= len(kinds)
        or any(type(item) is not kind for item, kind in zip(definition, kinds, strict=False))
    ):
        raise ValueError(f"Bad file format: The definition of the '{key}' dictionary entry is invalid.")
    vr, name = definition[0], definition[1]
    if vr not in ORTHANC_VRS:
        raise ValueError(f"{_OUT_OF_RANGE}: Unsupported value representation encountered: {vr}")
    if len(definition) == 2:
        raise ValueError(f"{_OUT_OF_RANGE}: the '{key}' dictionary entry needs a minimum multiplicity")
    minimum = definition[2]
    maximum = definition[3] if len(definition) > 3 else 0
    if minimum < 1 or maximum < 0 or 0 < maximum < minimum:
        raise ValueError(f"{_OUT_OF_RANGE}: bad multiplicity in the '{key}' dictionary entry")
    creator = definition[4] if len(definition) > 4 else None
    group = tag >> 16
    if creator is not None and (group < 0x0009 or not group & 1):
        raise ValueError(
            f"{_OUT_OF_RANGE}: Trying to register private tag ({group:04x},{tag & 0xFFFF:04x}), "
            "but it must have an odd group >= 0x0009"
        )
    if creator is None and is_private(tag) and tag & 0xFFFF <= 0x00FF:
        raise ValueError(
            f"{_OUT_OF_RANGE}: the private tag of the '{key}' dictionary entry needs a private creator"
        )
    return UserEntry(tag, vr, name, creator)
