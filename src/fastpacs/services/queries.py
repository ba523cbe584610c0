"""Query/retrieve: the questions modalities ask fastpacs, and those fastpacs asks them.

Local side (the C-FIND, C-MOVE and C-GET SCP, :class:`LocalQueryRetrieve`):
a C-FIND identifier is matched with the same constraints and the same plan
as ``/tools/find`` (:func:`fastpacs.services.find.make_constraint`,
:class:`fastpacs.index.find.FindExecution`), as Orthanc 1.10.1 builds them
from a C-FIND:

- a key with an empty value is asked for, not matched; ``QueryRetrieveLevel``
  and ``SpecificCharacterSet`` are never matched, nor the counters Orthanc
  computes (``NumberOf*Related*``, ``SOPClassesInStudy``);
- matching is case-sensitive except on PN values (unless ``CaseSensitivePN``);
- answers are cut at ``LimitFindResults`` (``LimitFindInstances`` for instances).

An answer holds every key of the identifier, plus ``SpecificCharacterSet``,
``QueryRetrieveLevel`` and ``RetrieveAETitle``. A key's value comes from the
main tags of the resource or its ancestors, from the counters, or else from
the stored tags of the resource's first instance; a key found nowhere is
answered empty.

A C-MOVE or C-GET names resources by their identifier at the query level
(several separated by ``\\``); without a level, the lowest level whose
identifier is present is used, as Orthanc does.
"""

from dataclasses import dataclass
from pathlib import Path

from fastpacs.config import Config
from fastpacs.dicom.dictionary import dictionary_vr
from fastpacs.dicom.ids import Level, RawId
from fastpacs.dicom.tags import tag_key
from fastpacs.dicom.values import DEFAULT_ENCODINGS
from fastpacs.errors import OrthancError
from fastpacs.index.database import Database
from fastpacs.index.find import MAIN_TAG_LEVELS, FindExecution, FindQuery, instance_strings
from fastpacs.index.metadata import SYSTEM_METADATA
from fastpacs.index.schema import Resource
from fastpacs.index.view import IndexView
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.find import make_constraint
from fastpacs.storage.blobs import BlobStore

SPECIFIC_CHARACTER_SET = 0x00080005
QUERY_RETRIEVE_LEVEL = 0x00080052
RETRIEVE_AE_TITLE = 0x00080054
MODALITIES_IN_STUDY = 0x00080061
SOP_CLASSES_IN_STUDY = 0x00080062
ACCESSION_NUMBER = 0x00080050
MODALITY = 0x00080060

QUERY_LEVELS = {
    "PATIENT": Level.PATIENT,
    "STUDY": Level.STUDY,
    "SERIES": Level.SERIES,
    "IMAGE": Level.INSTANCE,
}
"""The values of QueryRetrieveLevel (PS3.4 C.6), and ``INSTANCE`` which Orthanc also reads."""

LEVEL_NAMES = {level: name for name, level in QUERY_LEVELS.items()}

IDENTIFIER_TAGS = {
    Level.PATIENT: 0x00100020,  # PatientID
    Level.STUDY: 0x0020000D,  # StudyInstanceUID
    Level.SERIES: 0x0020000E,  # SeriesInstanceUID
    Level.INSTANCE: 0x00080018,  # SOPInstanceUID
}

COUNTERS = {
    # Keys Orthanc computes instead of matching, by level: tag → the level whose resources are counted.
    Level.PATIENT: {0x00201200: Level.STUDY, 0x00201202: Level.SERIES, 0x00201204: Level.INSTANCE},
    Level.STUDY: {0x00201206: Level.SERIES, 0x00201208: Level.INSTANCE},
    Level.SERIES: {0x00201209: Level.INSTANCE},
    Level.INSTANCE: {},
}
_NOT_MATCHED = {level: {QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET, *COUNTERS[level]} for level in Level}
_NOT_MATCHED[Level.STUDY].add(SOP_CLASSES_IN_STUDY)

Answer = dict[int, str]
"""Tag → value as text (multiple values separated by ``\\``)."""


class QueryError(Exception):
    """The identifier cannot be answered (no or unknown level, a key that cannot be matched)."""


def query_level(keys: dict[int, str]) -> Level:
    text = keys.get(QUERY_RETRIEVE_LEVEL, "").strip().upper()
    if text == "INSTANCE":
        return Level.INSTANCE
    if text not in QUERY_LEVELS:
        raise QueryError(f"unknown QueryRetrieveLevel {text!r}")
    return QUERY_LEVELS[text]


@dataclass(frozen=True)
class StoredInstance:
    """An instance to send by C-STORE: its file and what a presentation context needs."""

    path: Path | None
    """``None`` for a dataset that is not stored here (``store-straight``)."""
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str


class LocalQueryRetrieve:
    """Answers C-FIND identifiers and finds the instances a C-MOVE or C-GET asks for.

    Called from the DICOM server's association threads: everything here reads
    LMDB snapshots and nothing else.
    """

    def __init__(
        self, config: Config, database: Database, storage: BlobStore, default_encoding: DefaultEncoding
    ):
        self.config = config
        self.database = database
        self.storage = storage
        self.default_encoding = default_encoding

    # --- C-FIND

    def find(self, keys: dict[int, str]) -> list[Answer]:
        """The answers to a C-FIND identifier (its keys as text); :class:`QueryError` if it has none."""
        level = query_level(keys)
        constraints = []
        for tag, value in keys.items():
            if not value or tag in _NOT_MATCHED[level]:
                continue
            case_sensitive = self.config.case_sensitive_pn or dictionary_vr(tag, None) != "PN"
            try:
                constraint = make_constraint(tag, value, case_sensitive)
            except OrthancError as error:
                raise QueryError(str(error)) from error
            if constraint is not None:
                constraints.append(constraint)
        limit = (
            self.config.limit_find_instances if level == Level.INSTANCE else self.config.limit_find_results
        )
        character_set = keys.get(SPECIFIC_CHARACTER_SET) or DEFAULT_ENCODINGS.get(
            self.default_encoding.name, "ISO_IR 100"
        )
        with self.database.read() as view:
            execution = FindExecution(view, FindQuery(level, constraints, 0, limit))
            found = execution.run()
            return [
                self._answer(view, execution, rid, level=level, keys=keys, character_set=character_set)
                for rid in found
            ]

    def _answer(
        self,
        view: IndexView,
        execution: FindExecution,
        rid: RawId,
        *,
        level: Level,
        keys: dict[int, str],
        character_set: str,
    ) -> Answer:
        record = execution.record(rid)
        assert record is not None
        answer: Answer = {
            SPECIFIC_CHARACTER_SET: character_set,
            QUERY_RETRIEVE_LEVEL: LEVEL_NAMES[level],
            RETRIEVE_AE_TITLE: self.config.dicom_aet,
        }
        instance_tags: dict[str, str] | None = None
        for tag in keys:
            if tag in answer:
                continue
            value = self._computed(view, level, rid, tag)
            if value is None:
                value = self._main_tag(execution, level, record, tag)
            if value is None:
                if instance_tags is None:
                    first = _first_instance(view, rid, level)
                    instance_tags = instance_strings(view, first) if first is not None else {}
                value = instance_tags.get(tag_key(tag), "")
            answer[tag] = value
        return answer

    @staticmethod
    def _main_tag(execution: FindExecution, level: Level, record: Resource, tag: int) -> str | None:
        """The value of a main tag of the query level or above (``""`` if the resource lacks it)."""
        placed = MAIN_TAG_LEVELS.get(tag)
        if placed is None or placed[0] > level:
            return None
        holder: Resource | None = record
        while holder is not None and holder.level > placed[0]:
            holder = execution.record(holder.parent) if holder.parent is not None else None
        return "" if holder is None else holder.main_tags.get(placed[1], "")

    def _computed(self, view: IndexView, level: Level, rid: RawId, tag: int) -> str | None:
        counted = COUNTERS[level].get(tag)
        if counted is not None:
            return str(len(view.descendants(rid, level, counted)))
        if level == Level.STUDY and tag == MODALITIES_IN_STUDY:
            modalities = set()
            for series in view.children(rid):
                record = view.resource(series)
                if record is not None and record.main_tags.get("Modality"):
                    modalities.add(record.main_tags["Modality"])
            return "\\".join(sorted(modalities))
        if level == Level.STUDY and tag == SOP_CLASSES_IN_STUDY:
            classes = set()
            for instance in view.descendants(rid, Level.STUDY, Level.INSTANCE):
                sop_class = view.metadata_value(instance, SYSTEM_METADATA["SopClassUid"])
                if sop_class is not None:
                    classes.add(sop_class.value)
            return "\\".join(sorted(classes))
        return None

    # --- C-MOVE and C-GET

    def instances_to_retrieve(self, keys: dict[int, str]) -> list[StoredInstance]:
        """The instances a C-MOVE or C-GET identifier names, each resource's in insertion order."""
        with self.database.read() as view:
            if keys.get(QUERY_RETRIEVE_LEVEL, "").strip():
                level = query_level(keys)
                resources = _named_resources(view, level, keys)
            else:  # no level (not standard, but some modalities do it): the lowest level named
                resources = []
                for level in reversed(Level):
                    resources = _named_resources(view, level, keys)
                    if resources:
                        break
            found: list[StoredInstance] = []
            for resource in resources:
                found.extend(stored_instances(view, self.storage, level, resource))
            return list(dict.fromkeys(found))


def stored_instances(view: IndexView, storage: BlobStore, level: Level, rid: RawId) -> list[StoredInstance]:
    """The instances below a resource (itself for an instance), in insertion order."""
    found = []
    for instance in view.descendants(rid, level, Level.INSTANCE):
        record = view.resource_at(instance, Level.INSTANCE)
        if record is None or record.blob is None:
            continue
        sop_class = view.metadata_value(instance, SYSTEM_METADATA["SopClassUid"])
        syntax = view.metadata_value(instance, SYSTEM_METADATA["TransferSyntax"])
        found.append(
            StoredInstance(
                path=storage.path_of(record.blob.digest),
                sop_class_uid=sop_class.value if sop_class is not None else "",
                sop_instance_uid=record.main_tags.get("SOPInstanceUID", ""),
                transfer_syntax=syntax.value if syntax is not None else "",
            )
        )
    return found


def _first_instance(view: IndexView, rid: RawId, level: Level) -> RawId | None:
    current: RawId | None = rid
    for _ in range(level, Level.INSTANCE):
        children = view.children(current) if current is not None else []
        current = children[0] if children else None
    return current


def _named_resources(view: IndexView, level: Level, keys: dict[int, str]) -> list[RawId]:
    """Resources of ``level`` whose identifier is one of the values given for it."""
    text = keys.get(IDENTIFIER_TAGS[level], "").strip()
    if not text and level == Level.STUDY:
        text = keys.get(ACCESSION_NUMBER, "").strip()
        return _by_main_tag(view, level, "AccessionNumber", text)
    return _by_main_tag(view, level, level.identifier_keyword, text)


def _by_main_tag(view: IndexView, level: Level, keyword: str, text: str) -> list[RawId]:
    found: list[RawId] = []
    for value in filter(None, (part.strip() for part in text.split("\\"))):
        if keyword == level.identifier_keyword:
            found.extend(rid for found_level, rid in view.lookup(value) if found_level == level)
        else:
            constraint = make_constraint(ACCESSION_NUMBER, value, True)
            assert constraint is not None
            execution = FindExecution(view, FindQuery(level, [constraint]))
            found.extend(execution.run())
    return list(dict.fromkeys(found))
