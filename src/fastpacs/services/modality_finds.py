"""Orthanc's C-FIND shortcuts: POST /modalities/{name}/find-patient, find-study, find-series,
find-instance, and find (patients with their studies and series), deprecated; and find-worklist
(the Modality Worklist of a RIS).

Each answers the modality's C-FIND answers at once, simplified (tag names
to values), instead of keeping them as a query (/modalities/{name}/query).
As observed on Orthanc 1.10.1:

- the keys sent are a fixed set per level (:data:`RETURN_KEYS`), with the
  values the request gives them; a request's other fields are not sent (at
  study level, ModalitiesInStudy is); an unknown tag name is Orthanc's
  "Unknown DICOM tag", a body that is no JSON object an empty 400;
- a value that is not a string is sent as its JSON text (``5``, ``true``;
  ``null`` as empty); a list or an object is refused with 400 "Bad file
  format" (Orthanc fails with an internal error);
- below the patient level, the parents must be named: PatientID or
  AccessionNumber for studies, plus StudyInstanceUID for series, plus
  SeriesInstanceUID for instances, each longer than two characters (``*``
  is not a name); otherwise an empty 400 and nothing is sent;
- the patient level is asked with the Patient Root model, the others with
  the Study Root model.

find-worklist sends the request's fields as they are (sequences as arrays
of objects), with the character set: values must be strings, sequences
arrays of objects ("Bad Parameter type for tag ..." otherwise, as Orthanc);
a modality without a worklist is Orthanc's 2016 error.
"""

from typing import Any

import msgspec
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from fastpacs.dicom.dictionary import dictionary_vr, parse_tag
from fastpacs.dicom.ids import Level
from fastpacs.dicom.tags import TagJson, simplify
from fastpacs.dicom.values import DEFAULT_ENCODINGS, STRING_VRS
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.json_body import NotJsonError, json_object_body, read_json
from fastpacs.net.datasets import FLOAT_VRS, INTEGER_VRS, typed_value
from fastpacs.services.queries import ACCESSION_NUMBER, IDENTIFIER_TAGS, MODALITIES_IN_STUDY, QueryService

PATIENT_ID = IDENTIFIER_TAGS[Level.PATIENT]
STUDY_INSTANCE_UID = IDENTIFIER_TAGS[Level.STUDY]
SERIES_INSTANCE_UID = IDENTIFIER_TAGS[Level.SERIES]


def _tags(*keywords: str) -> tuple[int, ...]:
    """Tags by their DICOM keywords (the dictionary of the standard: OtherPatientIDs is retired)."""
    return tuple(tag_for_keyword(keyword) for keyword in keywords)


RETURN_KEYS: dict[Level, tuple[int, ...]] = {
    Level.PATIENT: _tags("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDs"),
    Level.STUDY: _tags(
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ReferringPhysicianName",
        "StudyDescription",
        "PatientID",
        "StudyInstanceUID",
        "StudyID",
    ),
    Level.SERIES: _tags(
        "SeriesDate",
        "SeriesTime",
        "AccessionNumber",
        "Modality",
        "SeriesDescription",
        "OperatorsName",
        "PatientID",
        "BodyPartExamined",
        "ProtocolName",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SeriesNumber",
        "PerformedProcedureStepDescription",
    ),
    Level.INSTANCE: _tags(
        "MediaStorageSOPInstanceUID",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "SOPInstanceUID",
        "AccessionNumber",
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "InstanceNumber",
    ),
}
"""The keys Orthanc 1.10.1 sends for each shortcut (observed on the wire)."""

EXTRA_KEYS = {Level.STUDY: frozenset({MODALITIES_IN_STUDY})}
"""Keys sent when the request gives them, beyond :data:`RETURN_KEYS`."""

SHORTEST_NAME = 3
"""A parent is named by at least this many characters."""


def find_keys(body: bytes, level: Level) -> dict[int, str]:
    """The keys a shortcut sends for a request body; an empty 400 when the parents are not named."""
    try:
        document = read_json(body)
    except NotJsonError:
        raise BareHttpError(400) from None
    if not isinstance(document, dict):
        raise BareHttpError(400)
    given = {parse_tag(name): _text(value) for name, value in document.items()}
    sendable = set(RETURN_KEYS[level]) | EXTRA_KEYS.get(level, frozenset())
    keys = {tag: "" for tag in RETURN_KEYS[level]}
    keys.update((tag, value) for tag, value in given.items() if tag in sendable)
    if level >= Level.STUDY and not (_names(keys, PATIENT_ID) or _names(keys, ACCESSION_NUMBER)):
        raise BareHttpError(400)
    if level >= Level.SERIES and not _names(keys, STUDY_INSTANCE_UID):
        raise BareHttpError(400)
    if level >= Level.INSTANCE and not _names(keys, SERIES_INSTANCE_UID):
        raise BareHttpError(400)
    return keys


def _text(value: Any) -> str:
    """A field's value as sent: strings as they are, other JSON values as their JSON text."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list | dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "A find field must be a string, a number or a boolean")
    return msgspec.json.encode(value).decode()


def _names(keys: dict[int, str], tag: int) -> bool:
    return len(keys.get(tag, "")) >= SHORTEST_NAME


async def find_level(
    queries: QueryService, modality: str, level: Level, keys: dict[int, str]
) -> list[TagJson]:
    """The modality's answers to ``keys`` at ``level``, simplified."""
    return [simplify(answer) for answer in await queries.find_answers(modality, level, keys)]


async def find_hierarchy(queries: QueryService, modality: str, body: bytes) -> list[TagJson]:
    """``find``: the patients matching the body, each with its ``Studies``, each with its ``Series``."""
    patients = await find_level(queries, modality, Level.PATIENT, find_keys(body, Level.PATIENT))
    for patient in patients:
        studies_keys = {tag: "" for tag in RETURN_KEYS[Level.STUDY]}
        studies_keys[PATIENT_ID] = _answer_value(patient, "PatientID")
        patient["Studies"] = studies = await find_level(queries, modality, Level.STUDY, studies_keys)
        for study in studies:
            series_keys = {tag: "" for tag in RETURN_KEYS[Level.SERIES]}
            series_keys[PATIENT_ID] = studies_keys[PATIENT_ID]
            series_keys[STUDY_INSTANCE_UID] = _answer_value(study, "StudyInstanceUID")
            study["Series"] = await find_level(queries, modality, Level.SERIES, series_keys)
    return patients


def _answer_value(answer: TagJson, name: str) -> str:
    value = answer.get(name)
    return value if isinstance(value, str) else ""


async def find_worklist(queries: QueryService, modality: str, body: bytes) -> list[TagJson]:
    """The modality's worklist items matching the body, simplified."""
    document = json_object_body(body, details="Must provide a JSON object")
    identifier = _worklist_dataset(document)
    identifier.SpecificCharacterSet = DEFAULT_ENCODINGS.get(queries.default_encoding.name, "ISO_IR 100")
    return [simplify(answer) for answer in await queries.find_worklist_answers(modality, identifier)]


def _worklist_dataset(fields: dict[str, Any]) -> Dataset:
    """The identifier of a worklist query: texts in their VRs, sequences from arrays of objects."""
    dataset = Dataset()
    for name, value in fields.items():
        tag = parse_tag(name)
        if dictionary_vr(tag, None) == "SQ":
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise _bad_type(tag)
            dataset.add_new(tag, "SQ", Sequence([_worklist_dataset(item) for item in value]))
        elif isinstance(value, str):
            _put_text(dataset, tag, value)
        else:
            raise _bad_type(tag)
    return dataset


def _put_text(dataset: Dataset, tag: int, text: str) -> None:
    """A text value in its VR; as Orthanc, "Bad file format" for a text its VR cannot hold (a number
    that is none, binary data), and an unknown (private) tag's text sent as its bytes."""
    vr = dictionary_vr(tag, None)
    if vr in STRING_VRS or vr in INTEGER_VRS or vr in FLOAT_VRS:
        try:
            dataset.add_new(tag, vr, typed_value(vr, text))
        except (ValueError, OverflowError):
            tag_text = f"({tag >> 16:04x},{tag & 0xFFFF:04x})"
            details = f'While creating a DICOM instance, tag {tag_text} has out-of-range value: "{text}"'
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, details) from None
    elif vr == "UN":
        dataset.add_new(tag, vr, text.encode("utf-8"))
    elif text:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    else:
        dataset.add_new(tag, vr.split(" or ")[0], None)


def _bad_type(tag: int) -> OrthancError:
    return OrthancError(
        ErrorCode.BAD_PARAMETER_TYPE, f"Bad Parameter type for tag {tag >> 16:04x},{tag & 0xFFFF:04x}"
    )
