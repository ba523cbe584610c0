"""Query identifiers and answers: between pydicom datasets and maps of tag → text.

Services see a C-FIND identifier as ``{tag: text}`` (multiple values
separated by ``\\``, numbers written out, sequences as empty text) and
answer the same way, a sequence's items as a list of such maps; the values
are given back their VR here, from the DICOM dictionary, to build the
datasets pynetdicom encodes.

An answer whose text does not fit its single-byte character set (a
Japanese name under the default ISO_IR 100) is sent in UTF-8 (ISO_IR 192)
rather than with characters dropped, as Orthanc 1.10.1 drops them.
"""

import logging
from collections.abc import Mapping

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from fastpacs.dicom.dictionary import dictionary_vr
from fastpacs.dicom.values import STRING_VRS, python_encodings

logger = logging.getLogger(__name__)

INTEGER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})
FLOAT_VRS = frozenset({"FL", "FD"})
SPECIFIC_CHARACTER_SET = 0x00080005
UTF8 = "ISO_IR 192"
Value = str | list["Mapping[int, Value]"]
"""A value as services give it: text, or a sequence's items."""


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return ""  # binary values are not matched, only asked for
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_text(item) for item in value)
    return str(value)


def identifier_keys(identifier: Dataset) -> dict[int, str]:
    """The keys of a query identifier as text (group lengths left out)."""
    keys: dict[int, str] = {}
    for element in identifier:
        tag = int(element.tag)
        if tag & 0xFFFF == 0:
            continue
        keys[tag] = "" if element.VR == "SQ" else _text(element.value).strip(" \x00")
    return keys


def typed_value(vr: str, text: str) -> object:
    """The value pydicom expects for a VR, from its text (``None`` for an empty one)."""
    if not text:
        return None
    parts = text.split("\\")
    if vr in INTEGER_VRS:
        numbers: list[int | float] = [int(part) for part in parts]
    elif vr in FLOAT_VRS:
        numbers = [float(part) for part in parts]
    else:
        return text
    return numbers[0] if len(numbers) == 1 else numbers


def _fits(keys: Mapping[int, Value], character_set: str) -> bool:
    """Whether every text value can be written in a single-byte character set (others are not checked)."""
    encodings = python_encodings(character_set, character_set)
    if len(encodings) != 1:
        return True
    try:
        for text in keys.values():
            if isinstance(text, str):
                text.encode(encodings[0])
    except UnicodeEncodeError:
        return False
    except LookupError:
        return True
    return True


def dataset_of(keys: Mapping[int, Value]) -> Dataset:
    """A query identifier or an answer, each value in its dictionary VR (binary ones left empty), the
    items of a sequence given as a list."""
    dataset = Dataset()
    character_set = keys.get(SPECIFIC_CHARACTER_SET)
    if isinstance(character_set, str) and character_set:
        if not _fits(keys, character_set):
            character_set = UTF8
        dataset.SpecificCharacterSet = character_set.split("\\")
    for tag, text in sorted(keys.items()):
        if tag != SPECIFIC_CHARACTER_SET:
            _add_text_element(dataset, tag, text)
    return dataset


def _add_text_element(dataset: Dataset, tag: int, text: Value) -> None:
    """One element from its text, in its dictionary VR: empty when the text does not fit the VR, for a
    binary or unknown VR, and for a sequence given as a text; a sequence given as items has them."""
    vr = dictionary_vr(tag, None)
    if isinstance(text, list):
        dataset.add_new(tag, "SQ", Sequence([dataset_of(item) for item in text]))
    elif vr == "SQ":
        dataset.add_new(tag, vr, Sequence())
    elif vr in STRING_VRS or vr in INTEGER_VRS or vr in FLOAT_VRS:
        try:
            dataset.add_new(tag, vr, typed_value(vr, text))
        except (ValueError, OverflowError):
            logger.debug("value %r of %08x is not a valid %s: sent empty", text, tag, vr)
            dataset.add_new(tag, vr, None)
    else:  # an ambiguous VR ("OB or OW", "US or SS") as its first, which pydicom need not correct
        dataset.add_new(tag, vr.split(" or ")[0], None)
