"""Resources as Orthanc shows them: the JSON of patients, studies, series and instances.

Everything is read from the index in one snapshot; no file is opened.
"""

from enum import Enum
from functools import cache
from typing import Any

from fastpacs.dicom.dictionary import parse_tag
from fastpacs.dicom.ids import Level, RawId, format_id
from fastpacs.dicom.main_tags import MAIN_TAGS
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.find import lookup_identifier
from fastpacs.index.metadata import SYSTEM_METADATA
from fastpacs.index.schema import Counter, Resource
from fastpacs.index.view import IndexView
from fastpacs.storage.blobs import StoredBlob

ResourceJson = dict[str, Any]
MEGABYTE = 1024 * 1024

_ORIGIN_METADATA = {SYSTEM_METADATA[name]: name for name in ("ModifiedFrom", "AnonymizedFrom")}
"""Metadata Orthanc also shows in the resource's JSON (resources made by modify/anonymize): types 5
and 6, read as one range."""
_FIRST_ORIGIN, _LAST_ORIGIN = min(_ORIGIN_METADATA), max(_ORIGIN_METADATA)
_LEVELS = tuple(Level)
"""Levels by value: indexing is cheaper than ``Level(value)`` for every resource shown."""
_CHILD_LIST_KEYS = {Level.PATIENT: "Studies", Level.STUDY: "Series", Level.SERIES: "Instances"}
_PARENT_KEYS = {Level.STUDY: "ParentPatient", Level.SERIES: "ParentStudy", Level.INSTANCE: "ParentSeries"}


class TagsFormat(Enum):
    """How the main DICOM tags of resources are shown (Orthanc's ``?short`` and ``?full``)."""

    HUMAN = "human"
    """Keyword → value, the default (and ``?simplify``, which wins over the others)."""
    SHORT = "short"
    """Tag number (``0010,0010``) → value; wins over ``full``."""
    FULL = "full"
    """Tag number → ``{"Name": keyword, "Type": "String", "Value": value}``."""


_FORMATTED_KEYS = ("MainDicomTags", "PatientMainDicomTags")


@cache
def _tag_key(keyword: str) -> str:
    tags = {name: tag for level_tags in MAIN_TAGS.values() for tag, name in level_tags}
    tag = tags.get(keyword) or parse_tag(keyword)
    return f"{tag >> 16:04x},{tag & 0xFFFF:04x}"


def _formatted_tags(tags: dict[str, str], form: TagsFormat) -> dict[str, Any]:
    if form is TagsFormat.SHORT:
        return {_tag_key(keyword): value for keyword, value in tags.items()}
    return {
        _tag_key(keyword): {"Name": keyword, "Type": "String", "Value": value}
        for keyword, value in tags.items()
    }


def formatted(answer: ResourceJson, form: TagsFormat) -> ResourceJson:
    """A resource's JSON with its main DICOM tags in the given format (the same object when HUMAN)."""
    if form is TagsFormat.HUMAN:
        return answer
    return {
        key: _formatted_tags(value, form) if key in _FORMATTED_KEYS else value
        for key, value in answer.items()
    }


def tags_format_of(document: dict[str, Any]) -> TagsFormat:
    """The format a JSON request asks for with ``"Short"`` and ``"Full"`` (Booleans, as Orthanc requires)."""
    for name in ("Short", "Full"):
        if not isinstance(document.get(name, False), bool):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Boolean value expected in field: {name}")
    if document.get("Short"):
        return TagsFormat.SHORT
    return TagsFormat.FULL if document.get("Full") else TagsFormat.HUMAN


def resource_path(level: Level, rid: RawId) -> str:
    return f"/{level.plural}/{format_id(rid)}"


def resource_json(view: IndexView, rid: RawId, record: Resource) -> ResourceJson:
    """The object Orthanc answers for ``GET /{level}/{id}``."""
    level = _LEVELS[record.level]
    answer: ResourceJson = {
        "ID": format_id(rid),
        "MainDicomTags": record.main_tags,
        "Type": level.type_name,
    }
    if record.parent is not None:
        answer[_PARENT_KEYS[level]] = format_id(record.parent)
    if level == Level.INSTANCE:
        assert record.blob is not None
        answer["FileSize"] = record.blob.size
        answer["FileUuid"] = record.blob.uuid
        answer["IndexInSeries"] = record.index_in_series
    else:
        answer[_CHILD_LIST_KEYS[level]] = [format_id(child) for child in view.children(rid)]
        answer["IsStable"] = view.is_stable(rid)
        answer["LastUpdate"] = view.last_update(rid)
    if level == Level.STUDY:
        answer["PatientMainDicomTags"] = record.patient_tags or {}
    if level == Level.SERIES:
        answer["ExpectedNumberOfInstances"] = record.expected_instances
        answer["Status"] = view.series_status(record, rid).value
    for kind, origin in view.metadata_range(rid, _FIRST_ORIGIN, _LAST_ORIGIN).items():
        answer[_ORIGIN_METADATA[kind]] = origin.value
    return answer


def _page(view: IndexView, level: Level, since: int, limit: int | None) -> list[RawId]:
    if limit == 0:
        return []
    return view.list_level(level, since, limit or 0)


def _descendants(view: IndexView, rid: RawId, level: Level, target: Level) -> list[RawId]:
    """The resources of level ``target`` below ``rid``, in the order Orthanc lists them.

    At each step down, Orthanc puts the children of the last parent first
    (each parent's children in insertion order): a patient's series are listed
    from its last study to its first, its instances from the last series of
    that order to the first.
    """
    current = [rid]
    for _ in range(level, target):
        current = [child for parent in reversed(current) for child in view.children(parent)]
    return current


class ResourceService:
    """Read access to resources: single objects, listings, children, parents."""

    def __init__(self, database: Database):
        self.database = database

    def get(self, level: Level, rid: RawId) -> ResourceJson | None:
        with self.database.read() as view:
            record = view.resource_at(rid, level)
            return None if record is None else resource_json(view, rid, record)

    def exists(self, level: Level, rid: RawId) -> bool:
        with self.database.read() as view:
            return view.resource_at(rid, level) is not None

    def list_ids(self, level: Level, since: int, limit: int | None) -> list[str]:
        """IDs of a level in insertion order; ``limit`` None means all, 0 means none (as in Orthanc)."""
        with self.database.read() as view:
            return [format_id(rid) for rid in _page(view, level, since, limit)]

    def list_expanded(self, level: Level, since: int, limit: int | None) -> list[ResourceJson]:
        with self.database.read() as view:
            answers = []
            for rid in _page(view, level, since, limit):
                record = view.resource(rid)
                if record is not None:
                    answers.append(resource_json(view, rid, record))
            return answers

    def related(self, level: Level, rid: RawId, target: Level) -> list[ResourceJson] | ResourceJson | None:
        """Descendants at a lower level (a list) or the ancestor at a higher one (an object).

        ``None`` when the resource does not exist at ``level``.
        """
        with self.database.read() as view:
            if view.resource_at(rid, level) is None:
                return None
            if target < level:
                ancestor = view.ancestor(rid, level, target)
                record = view.resource(ancestor)
                assert record is not None
                return resource_json(view, ancestor, record)
            answers = []
            for child in _descendants(view, rid, level, target):
                record = view.resource(child)
                if record is not None:
                    answers.append(resource_json(view, child, record))
            return answers

    def instance_blob(self, rid: RawId) -> StoredBlob | None:
        """The blob of an instance's DICOM file (its ``uuid`` is the FileUuid)."""
        with self.database.read() as view:
            record = view.resource_at(rid, Level.INSTANCE)
            return None if record is None else record.blob

    def instance_blob_digest(self, rid: RawId) -> tuple[bytes, str] | None:
        """The blob digest and FileUuid of an instance's DICOM file when the blob is the file itself,
        to be sent by path (the fast lane); ``None`` as well for a file stored compressed, which only
        :meth:`fastpacs.storage.blobs.BlobStore.read` gives back."""
        blob = self.instance_blob(rid)
        if blob is None or blob.compressed:
            return None
        return blob.digest, blob.uuid

    def is_blob_referenced(self, digest: bytes) -> bool:
        """Whether some stored resource still refers to the blob of this SHA-256."""
        with self.database.read() as view:
            return view.blob_references(digest) > 0

    def statistics(self) -> dict[str, Any]:
        """GET /statistics: counts per level and stored sizes (sizes as strings, as Orthanc has them)."""
        with self.database.read() as view:
            disk = view.counter(Counter.DISK_SIZE)
            uncompressed = view.counter(Counter.UNCOMPRESSED_SIZE)
            counts = {level: view.count(level) for level in Level}
        return {
            "CountInstances": counts[Level.INSTANCE],
            "CountPatients": counts[Level.PATIENT],
            "CountSeries": counts[Level.SERIES],
            "CountStudies": counts[Level.STUDY],
            "TotalDiskSize": str(disk),
            "TotalDiskSizeMB": disk // MEGABYTE,
            "TotalUncompressedSize": str(uncompressed),
            "TotalUncompressedSizeMB": uncompressed // MEGABYTE,
        }

    def lookup(self, identifier: str) -> list[ResourceJson]:
        """POST /tools/lookup: resources whose PatientID or UID equals the text as Orthanc compares
        identifiers (normalized: ``find p3`` finds ``FIND_P3``); wildcards refused as Orthanc does."""
        if "*" in identifier or "?" in identifier:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "Wildcards are not allowed on tag 0010,0020")
        with self.database.read() as view:  # an empty text finds the empty identifiers, as in Orthanc
            found = lookup_identifier(view, identifier)
        return [
            {"ID": format_id(rid), "Path": resource_path(level, rid), "Type": level.type_name}
            for level, rid in found
        ]
