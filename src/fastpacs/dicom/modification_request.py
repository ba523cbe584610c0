"""Reading the bodies of /modify, /anonymize, /split and /merge into a :class:`Modification`.

Runs in the server process, before any instance is touched: tag names and
paths are resolved, Orthanc's rules about the DICOM identifiers enforced
(``Force``, the level checks) and every replacement value cast to the VR
of its attribute, so that a bad request gets its 400 (or Orthanc's 500 for
an unknown tag name) at once. The errors, their codes and texts are those
of Orthanc 1.10.1.
"""

import base64
import binascii
import os
import re
from typing import Any

import msgspec
from pydicom.datadict import dictionary_VR

from fastpacs.dicom.anonymization import Action, profile
from fastpacs.dicom.dictionary import attribute_name, is_private, parse_tag
from fastpacs.dicom.ids import Level
from fastpacs.dicom.modification import (
    IDENTIFIER_TAGS,
    PATIENT_ID,
    PATIENT_NAME,
    SERIES_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    Modification,
    Replacement,
    TagPath,
    Value,
    cast_text,
    out_of_range,
)
from fastpacs.dicom.modules import GENERAL_STUDY_MODULE, PATIENT_MODULE
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.json_body import json_object_body

UID_KEY_SIZE = 32
PATIENT_IDENTITY_REMOVED = 0x00120062
DEIDENTIFICATION_METHOD = 0x00120063
DATABASE_KEYS = frozenset({PATIENT_ID, *IDENTIFIER_TAGS.values()})
"""The attributes Orthanc's index is keyed on: changing them needs ``Force``."""
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
_INDEX = re.compile(r"[+-]?[0-9]{1,11}", re.ASCII)
"""An item index: an ``int`` of C++ (Orthanc's), checked for range once read; no more digits than one."""
_PARENTHESISED_TAG = re.compile(r"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)")
_DATA_URI = re.compile(r"^data:[^,;]*;base64,", re.ASCII)

SPLIT_MODULE_TAGS = tuple(tag for tag, _name in (*PATIENT_MODULE, *GENERAL_STUDY_MODULE))
"""The attributes split and merge set (Orthanc's patient and general study modules)."""


def decode_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body; Orthanc's "Bad file format" for anything else."""
    return json_object_body(body)


def boolean_member(request: dict[str, Any], name: str, default: bool) -> bool:
    value = request.get(name, default)
    if not isinstance(value, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f'Member "{name}" should be a Boolean value')
    return value


def string_member(request: dict[str, Any], name: str) -> str | None:
    """A text option; ``None`` when absent (a JSON null is no text: Orthanc's 400, as for a number)."""
    value = request.get(name)
    if name in request and not isinstance(value, str):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"String value expected in field: {name}")
    return value


def parse_path(name: str) -> TagPath:
    """``PatientName``, ``0010,0010``, ``0010-0010`` or ``Seq[0].Other[*].Tag``, with Orthanc's
    errors: the final tag's first ("Unknown DICOM tag"), then each step's (400s naming the fault)."""
    *prefix, final = name.split(".")
    tag = _path_tag(final.strip())
    return TagPath(tag=tag, steps=tuple(_path_step(step) for step in prefix))


def _path_tag(text: str) -> int:
    """A tag of a path: as everywhere (:func:`parse_tag`), or ``(gggg,eeee)``."""
    if _PARENTHESISED_TAG.fullmatch(text):
        return int(text[1:5] + text[6:10], 16)
    return parse_tag(text)


def _path_step(step: str) -> tuple[int, int | None]:
    """``Seq[2]`` or ``Seq[*]``: the sequence and the item (``None``: every item)."""
    name, bracket, rest = step.partition("[")
    name, rest = name.strip(), rest.strip()
    if not bracket:
        raise _bad_path("Parent path doesn't contain an index")
    if not name:
        raise _bad_path("Parent path doesn't contain a tag")
    if not rest.endswith("]"):
        raise _bad_path("Parent path doesn't contain the end of the index")
    sequence = _path_tag(name)
    index = rest[:-1].strip()
    if index == "*":
        return sequence, None
    if not _INDEX.fullmatch(index) or not -(2**31) <= int(index) < 2**31:
        raise _bad_path(f"Not a valid index in parent path: [{index}]")
    if int(index) < 0:
        raise _bad_path(f"Negative index in parent path: {index}")
    return sequence, int(index)


def _bad_path(details: str) -> OrthancError:
    return OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, details)


def dictionary_vr_of(tag: int) -> str:
    """The VR to write a public attribute with; empty for a private one (the file decides)."""
    if is_private(tag):
        return ""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return vr.split(" or ")[0]


def cast_value(tag: int, vr: str, value: Any) -> Value | bytes:
    """A JSON value of ``Replace`` as a value of the attribute's VR (see :data:`Value`)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad_type(tag)
    if _DATA_URI.match(value):
        try:
            decoded = base64.b64decode(value.partition(",")[2], validate=True)
        except binascii.Error as error:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from error
        if vr not in _NUMBER_VRS:
            return decoded
        value = decoded.decode("latin-1")  # the number it spells, as Orthanc reads it
    if vr in _BINARY_VRS:
        return value.encode()
    return cast_text(tag, vr, value) if vr else value


def _bad_type(tag: int) -> OrthancError:
    return OrthancError(
        ErrorCode.BAD_PARAMETER_TYPE, f"Bad Parameter type for tag {tag >> 16:04x},{tag & 0xFFFF:04x}"
    )


def _replacement(path: TagPath, value: Any) -> Replacement:
    """A ``Replace`` entry: a value cast to the attribute's VR, or a sequence's items."""
    vr = dictionary_vr_of(path.tag)
    if vr == "SQ" or (not vr and isinstance(value, list)):
        if isinstance(value, str) or value is None:
            raise out_of_range(path.tag, value or "")
        if not isinstance(value, list):
            raise _bad_type(path.tag)
        if not all(isinstance(item, dict) for item in value):
            raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE)
        items = tuple(
            tuple(_replacement(TagPath(tag=parse_tag(name)), item_value) for name, item_value in item.items())
            for item in value
        )
        return Replacement(path=path, vr="SQ", items=items)
    value = cast_value(path.tag, vr, value)
    if isinstance(value, bytes):
        return Replacement(path=path, vr=vr, raw=value)
    return Replacement(path=path, vr=vr, value=value)


def _is_file_meta(path: TagPath) -> bool:
    """An attribute of the file meta group, which the writer makes; Orthanc ignores requests to replace
    or remove them (a TransferSyntaxUID that did not describe the data would make the file unreadable),
    and to write them into sequence items, where they have no place."""
    return path.tag >> 16 == 0x0002


class _Builder:
    """Orthanc's DicomModification while a request is read: the sets each option changes."""

    def __init__(self, level: Level, anonymization: bool):
        self.level = level
        self.anonymization = anonymization
        self.clearings: set[int] = set()
        self.removals: set[int] = set()
        self.uid_tags: set[int] = set()
        self.replacements: dict[TagPath, Replacement] = {}
        self.path_removals: list[TagPath] = []
        self.kept_paths: list[TagPath] = []
        self.kept_identifiers: set[int] = set()
        self.private_tags_kept: set[int] = set()
        self.remove_private_tags = False
        self.remove_repeating_groups = False
        self.orthanc_anonymization = False
        """Whether the result is still the plain profile (DeidentificationMethod is then written)."""
        self.private_creator = ""

    def _forget(self, tag: int) -> None:
        self.clearings.discard(tag)
        self.removals.discard(tag)
        self.uid_tags.discard(tag)
        self.private_tags_kept.discard(tag)
        self.replacements.pop(TagPath(tag=tag), None)

    def remove(self, path: TagPath) -> None:
        self.orthanc_anonymization = False
        if _is_file_meta(path):
            return
        if path.steps:
            self.path_removals.append(path)
            return
        self._forget(path.tag)
        self.removals.add(path.tag)

    def replace(self, path: TagPath, replacement: Replacement) -> None:
        if _is_file_meta(path):
            return
        if path.steps:
            self.replacements[path] = replacement
            return
        self._forget(path.tag)
        self.replacements[path] = replacement

    def keep(self, path: TagPath) -> None:
        self.orthanc_anonymization = False
        if path.steps:
            self.kept_paths.append(path)
            return
        self._forget(path.tag)
        if path.tag in IDENTIFIER_TAGS.values():
            self.kept_identifiers.add(path.tag)
        elif is_private(path.tag):
            self.private_tags_kept.add(path.tag)
        if dictionary_vr_of(path.tag) in ("SQ", ""):
            self.kept_paths.append(path)

    def read_options(self, request: dict[str, Any], force: bool) -> None:
        """``Remove``, ``Replace``, ``Keep`` and ``PrivateCreator``, in Orthanc's order."""
        removals = _list_of_tags(request, "Remove")
        replacements = request.get("Replace", {})
        if not isinstance(replacements, dict):
            raise OrthancError(ErrorCode.BAD_REQUEST)
        kept = _list_of_tags(request, "Keep")
        self.private_creator = string_member(request, "PrivateCreator") or ""
        for name in removals:
            path = _checked_path(name, "removed", force)
            self.remove(path)
        for name in sorted(replacements):
            path = _checked_path(name, "replaced", force)
            self.orthanc_anonymization = False
            self.replace(path, _replacement(path, replacements[name]))
        for name in kept:
            self.keep(_checked_path(name, "kept", force))

    def is_replaced(self, tag: int) -> bool:
        return TagPath(tag=tag) in self.replacements

    def build(self, uid_key: bytes) -> Modification:
        return Modification(
            level=self.level,
            uid_key=uid_key,
            anonymization=self.anonymization,
            remove_private_tags=self.remove_private_tags,
            private_tags_kept=frozenset(self.private_tags_kept),
            clearings=frozenset(self.clearings),
            removals=frozenset(self.removals),
            uid_tags=frozenset(self.uid_tags),
            remove_repeating_groups=self.remove_repeating_groups,
            replacements=tuple(self.replacements.values()),
            path_removals=tuple(self.path_removals),
            kept_paths=tuple(self.kept_paths),
            kept_identifiers=frozenset(self.kept_identifiers),
            private_creator=self.private_creator,
        )


def _list_of_tags(request: dict[str, Any], name: str) -> list[str]:
    value = request.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise OrthancError(ErrorCode.BAD_REQUEST)
    return value


def _checked_path(name: str, operation: str, force: bool) -> TagPath:
    path = parse_path(name)
    if not path.steps and not force and path.tag in DATABASE_KEYS:
        raise OrthancError(
            ErrorCode.BAD_REQUEST,
            f'Marking tag "{name}" as to be {operation} requires the "Force" option to be set to true',
        )
    return path


def _forbid_identifier_removal(builder: _Builder) -> None:
    if builder.removals & DATABASE_KEYS:
        raise OrthancError(ErrorCode.BAD_REQUEST)


_LEVEL_CHECKS = (
    (Level.STUDY, PATIENT_ID, "When modifying a study, the parent PatientID cannot be manually modified"),
    (Level.SERIES, PATIENT_ID, "When modifying a series, the parent PatientID cannot be manually modified"),
    (
        Level.SERIES,
        STUDY_INSTANCE_UID,
        "When modifying a series, the parent StudyInstanceUID cannot be manually modified",
    ),
    # The instance level is given explicitly only by /tools/bulk-modify (the instance route deduces it).
    (
        Level.INSTANCE,
        PATIENT_ID,
        "When modifying an instance, the parent PatientID cannot be manually modified",
    ),
    (
        Level.INSTANCE,
        STUDY_INSTANCE_UID,
        "When modifying an instance, the parent StudyInstanceUID cannot be manually modified",
    ),
    (
        Level.INSTANCE,
        SERIES_INSTANCE_UID,
        "When modifying an instance, the parent SeriesInstanceUID cannot be manually modified",
    ),
)


def modification_level(builder: _Builder) -> Level:
    """The level of an instance's modification, from the identifiers it replaces (as Orthanc)."""
    for level, tag in ((Level.PATIENT, PATIENT_ID), *IDENTIFIER_TAGS.items()):
        if level < Level.INSTANCE and builder.is_replaced(tag):
            return level
    return Level.INSTANCE


def parse_modify_request(request: dict[str, Any], level: Level | None) -> Modification:
    """A /modify body; ``level`` is the resource's (``None``: deduced from the identifiers replaced, as
    for an instance or a bulk request without ``Level``). Refused when it breaks the rules of its level
    (:func:`level_refusal`)."""
    modification = read_modify_request(request, level)
    refusal = level_refusal(modification, level)
    if refusal is not None:
        raise refusal
    return modification


def read_modify_request(request: dict[str, Any], level: Level | None) -> Modification:
    """A /modify body, the rules of its level not checked (see :func:`parse_modify_request`)."""
    force = boolean_member(request, "Force", False)
    builder = _Builder(Level.INSTANCE if level is None else level, anonymization=False)
    builder.remove_private_tags = boolean_member(request, "RemovePrivateTags", False)
    builder.read_options(request, force)
    _forbid_identifier_removal(builder)
    if level is None:
        builder.level = modification_level(builder)
    return builder.build(os.urandom(UID_KEY_SIZE))


def level_refusal(modification: Modification, level: Level | None) -> OrthancError | None:
    """The error a modification of a resource of ``level`` breaking the rules of that level gets (a
    patient's PatientID must change, a study's must not...). Orthanc's job checks them on each instance:
    a synchronous request gets the error, an asynchronous one a job that fails with it."""
    replaced = {
        replacement.path.tag for replacement in modification.replacements if not replacement.path.steps
    }
    if level == Level.PATIENT and PATIENT_ID not in replaced:
        return _patient_id_required()
    for checked_level, tag, message in _LEVEL_CHECKS:
        if level == checked_level and tag in replaced:
            return OrthancError(ErrorCode.BAD_REQUEST, message)
    return None


def _patient_id_required() -> OrthancError:
    return OrthancError(
        ErrorCode.BAD_REQUEST, "When modifying a patient, her PatientID is required to be modified"
    )


class AnonymizationRequest(msgspec.Struct, frozen=True):
    modification: Modification
    needs_patient_name: bool
    """Neither replaced, kept nor removed: the server gives it a generated name (``AnonymizedN``)."""
    keeps_patient_id: bool = False
    """``Keep`` of PatientID (with ``Force``). An anonymization is a modification of the patient level,
    whose rule is a new PatientID: refused (see :func:`anonymization_refusal`)."""


def anonymization_refusal(anonymization: AnonymizationRequest) -> OrthancError | None:
    """The error of an anonymization breaking the rule of the patient level, as :func:`level_refusal`."""
    return _patient_id_required() if anonymization.keeps_patient_id else None


def parse_anonymize_request(request: dict[str, Any]) -> AnonymizationRequest:
    """An /anonymize body: the basic profile of ``DicomVersion``, then the request's own options."""
    force = boolean_member(request, "Force", False)
    version = request.get("DicomVersion")
    if "DicomVersion" in request and not isinstance(version, str):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    chosen = profile(version)
    builder = _Builder(Level.PATIENT, anonymization=True)
    builder.clearings = set(chosen.tags(Action.EMPTY))
    builder.removals = set(chosen.tags(Action.REMOVE))
    builder.uid_tags = set(chosen.tags(Action.NEW_UID)) | {PATIENT_ID, PATIENT_NAME}
    builder.remove_repeating_groups = chosen.removes_repeating_groups
    builder.remove_private_tags = True
    builder.orthanc_anonymization = True
    builder.replace(
        TagPath(tag=PATIENT_IDENTITY_REMOVED), Replacement(TagPath(tag=PATIENT_IDENTITY_REMOVED), "CS", "YES")
    )
    if boolean_member(request, "KeepPrivateTags", False):
        builder.remove_private_tags = False
        builder.orthanc_anonymization = False
    builder.read_options(request, force)
    _forbid_identifier_removal(builder)
    needs_patient_name = PATIENT_NAME in builder.uid_tags
    keeps_patient_id = PATIENT_ID not in builder.uid_tags and not builder.is_replaced(PATIENT_ID)
    builder.uid_tags.discard(PATIENT_NAME)
    if builder.orthanc_anonymization:
        method = TagPath(tag=DEIDENTIFICATION_METHOD)
        builder.replace(method, Replacement(method, "LO", chosen.deidentification_method))
    return AnonymizationRequest(builder.build(os.urandom(UID_KEY_SIZE)), needs_patient_name, keeps_patient_id)


def with_patient_name(modification: Modification, name: str) -> Modification:
    """The modification writing ``name`` as PatientName (the generated ``AnonymizedN``)."""
    path = TagPath(tag=PATIENT_NAME)
    return msgspec.structs.replace(
        modification, replacements=(*modification.replacements, Replacement(path, "PN", name))
    )


def split_modification(target_study_uid: str, replace: dict[str, str], remove: list[str]) -> Modification:
    """What /studies/{id}/split does to each instance moved: the new study's UID, new series and
    instance UIDs, and the patient/study module attributes the request replaces or removes."""
    builder = _Builder(Level.SERIES, anonymization=False)
    allowed = set(SPLIT_MODULE_TAGS) - {STUDY_INSTANCE_UID}
    for name in remove:
        builder.remove(_module_path(name, allowed))
    for name, value in replace.items():
        path = _module_path(name, allowed)
        builder.replace(path, _replacement(path, value))
    study = TagPath(tag=STUDY_INSTANCE_UID)
    builder.replace(study, Replacement(study, "UI", target_study_uid))
    return builder.build(os.urandom(UID_KEY_SIZE))


def _module_path(name: str, allowed: set[int]) -> TagPath:
    tag = parse_tag(name)
    if tag not in allowed:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE,
            "Cannot modify the following tag while splitting a study (not in the patient/study modules): "
            f"{attribute_name(tag, None)} ({tag >> 16:04x},{tag & 0xFFFF:04x})",
        )
    return TagPath(tag=tag)


def merge_modification(target_values: dict[int, str]) -> Modification:
    """What /studies/{id}/merge does to each instance merged: the target study's patient and
    study module attributes (``target_values``: those of one of its instances; the others are
    removed), new series and instance UIDs."""
    builder = _Builder(Level.SERIES, anonymization=False)
    for tag in SPLIT_MODULE_TAGS:
        path = TagPath(tag=tag)
        if tag in target_values:
            builder.replace(path, _replacement(path, target_values[tag]))
        else:
            builder.remove(path)
    return builder.build(os.urandom(UID_KEY_SIZE))
