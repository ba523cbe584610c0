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
- answers are cut at ``LimitFindResults`` (``LimitFindInstances`` for instances),
  and as in Orthanc only the first that many plus one resources passing the
  database phase are candidates (:attr:`fastpacs.index.find.FindQuery.candidates`).

An answer holds every key of the identifier, plus ``SpecificCharacterSet``,
``QueryRetrieveLevel`` and ``RetrieveAETitle``. A key's value comes from the
main tags of the resource or its ancestors, from the counters, or else from
the stored tags of the resource's first instance; a key found nowhere is
answered empty. As in Orthanc, the instance is read only when a key or a
constraint is not a main tag of any level: a study-level query asking for
``SeriesDescription`` alone answers it empty. A sequence key is answered with
the instance's items, and left out when the instance has none.

A C-MOVE or C-GET names resources by their identifier at the query level
(several separated by ``\\``), compared in Orthanc's normalized form
(``find p3`` names ``FIND_P3``; a wildcard is refused); without a level, the
lowest level whose identifier is present is used, as Orthanc does.

Remote side (``/modalities/{name}/query`` and ``/queries``, :class:`QueryService`):
the query goes out as Orthanc's SCU sends it (normalized to the main tags
of its level unless ``Normalize`` is false, the identifiers of the level and
above added, the modality's manufacturer quirks applied); the answers are
kept in full tag form, with the query, for ``QueryRetrieveSize`` queries.
A retrieve is a :class:`RetrieveJob` (Orthanc's ``DicomMoveScu``): one C-MOVE
per answer, of the identifiers Orthanc's C-MOVE sends for the level.
"""

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec
from pydicom.dataset import Dataset

from fastpacs.config import Config
from fastpacs.dicom.dictionary import attribute_name, dictionary_vr, parse_tag
from fastpacs.dicom.ids import Level, RawId
from fastpacs.dicom.main_tags import MAIN_TAGS
from fastpacs.dicom.tags import TagJson, TagWalker, shorten, simplify, tag_key
from fastpacs.dicom.values import DEFAULT_ENCODINGS, python_encodings
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.find import (
    MAIN_TAG_LEVELS,
    FindExecution,
    FindQuery,
    TagsJson,
    instance_tags,
    resources_with_identifier,
)
from fastpacs.index.metadata import SYSTEM_METADATA
from fastpacs.index.schema import Resource
from fastpacs.index.view import IndexView
from fastpacs.jobs.engine import JobEngine
from fastpacs.jobs.job import Job
from fastpacs.json_body import NotJsonError, json_body, json_object_body, read_json
from fastpacs.net import scu
from fastpacs.net.scu import RemoteNode, StoredInstance
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.exports import run_synchronously, stored_instances
from fastpacs.services.find import make_constraint, parse_level
from fastpacs.services.modalities import ModalityRegistry
from fastpacs.services.request_fields import integer_field, is_synchronous, priority_field
from fastpacs.storage.blobs import BlobStore

SPECIFIC_CHARACTER_SET = 0x00080005
QUERY_RETRIEVE_LEVEL = 0x00080052
RETRIEVE_AE_TITLE = 0x00080054
MODALITIES_IN_STUDY = 0x00080061
SOP_CLASSES_IN_STUDY = 0x00080062
ACCESSION_NUMBER = 0x00080050

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
_ANSWERED_FROM_INDEX = frozenset(
    {*MAIN_TAG_LEVELS, *_NOT_MATCHED[Level.PATIENT], *_NOT_MATCHED[Level.STUDY], *_NOT_MATCHED[Level.SERIES]}
    | {MODALITIES_IN_STUDY}
)
"""Keys whose value never needs an instance's tags (Orthanc reads the file for any other key)."""

Answer = dict[int, "str | list[Answer]"]
"""Tag → value as text (multiple values separated by ``\\``), or a sequence's items."""


class QueryError(Exception):
    """The identifier cannot be answered (no or unknown level, a key that cannot be matched)."""


def query_level(keys: dict[int, str]) -> Level:
    text = keys.get(QUERY_RETRIEVE_LEVEL, "").strip().upper()
    if text == "INSTANCE":
        return Level.INSTANCE
    if text not in QUERY_LEVELS:
        raise QueryError(f"unknown QueryRetrieveLevel {text!r}")
    return QUERY_LEVELS[text]


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

    def find(self, keys: dict[int, str]) -> tuple[list[Answer], bool]:
        """The answers to a C-FIND identifier (its keys as text), and whether they are all the matches
        (not when LimitFindResults/LimitFindInstances cut the candidates); :class:`QueryError` if the
        identifier has no valid level or a key that cannot be matched."""
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
            query = FindQuery(level, constraints, 0, limit, candidates=limit + 1 if limit else 0)
            execution = FindExecution(view, query)
            found = execution.run()
            reads_files = execution.plan.reads_instances or not _ANSWERED_FROM_INDEX.issuperset(keys)
            answers = [
                self._answer(
                    view,
                    execution,
                    rid,
                    level=level,
                    keys=keys,
                    character_set=character_set,
                    reads_files=reads_files,
                )
                for rid in found
            ]
            return answers, execution.complete

    def _answer(
        self,
        view: IndexView,
        execution: FindExecution,
        rid: RawId,
        *,
        level: Level,
        keys: dict[int, str],
        character_set: str,
        reads_files: bool,
    ) -> Answer:
        record = execution.record(rid)
        assert record is not None
        answer: Answer = {
            SPECIFIC_CHARACTER_SET: character_set,
            QUERY_RETRIEVE_LEVEL: LEVEL_NAMES[level],
            RETRIEVE_AE_TITLE: self.config.dicom_aet,
        }
        tags: TagsJson | None = None
        for tag in keys:
            if tag in answer:
                continue
            value: str | list[Answer] | None = self._computed(view, level, rid, tag)
            if value is None:
                value = self._main_tag(execution, level, record, tag)
            if value is None and not reads_files:
                value = ""
            if value is None:
                if tags is None:
                    sample = execution.sample_series.get(rid)  # ModalitiesInStudy: a matching series
                    first = (
                        _first_instance(view, sample, Level.SERIES)
                        if sample
                        else _first_instance(view, rid, level)
                    )
                    tags = {} if first is None else instance_tags(view, first, with_header=True)
                entry = tags.get(tag_key(tag))
                value = _answer_value(entry) if entry is not None else None
            if value is None and dictionary_vr(tag, None) == "SQ":
                continue  # as in Orthanc, a sequence the instance lacks is left out of the answer
            answer[tag] = "" if value is None else value
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

    def instances_to_retrieve(
        self, keys: dict[int, str], *, every_value: bool = False
    ) -> list[StoredInstance]:
        """The instances a C-MOVE or C-GET identifier names, each resource's in the order Orthanc sends
        them (:meth:`~fastpacs.index.view.IndexView.descendants_last_first`).

        Raises :class:`QueryError` where Orthanc 1.10.1 refuses the retrieve:
        an unknown level, a wildcard, an identifier naming nothing. With
        ``every_value`` (Orthanc's C-GET), also a missing level, and a listed
        value (an empty one too) naming nothing.
        """
        with self.database.read() as view:
            if keys.get(QUERY_RETRIEVE_LEVEL, "").strip():
                level = query_level(keys)
                resources = _named_resources(view, level, keys, every_value)
            elif every_value:
                raise QueryError("no QueryRetrieveLevel")
            else:  # no level (not standard, but some modalities do it): the lowest level named
                resources = []
                for level in reversed(Level):
                    resources = _named_resources(view, level, keys, every_value)
                    if resources:
                        break
            if not resources:
                raise QueryError("the identifier names no resource")
            found: list[StoredInstance] = []
            for resource in resources:
                found.extend(stored_instances(view, self.storage, level, resource))
            return list(dict.fromkeys(found))


def _answer_value(entry: dict[str, object]) -> str | list[Answer] | None:
    """An answer's value from an element of the stored JSON: its text, a sequence's items (as Orthanc
    copies them from the file), ``None`` for a binary or too long value."""
    if entry.get("Type") == "String":
        return str(entry["Value"])
    if entry.get("Type") == "Sequence":
        items = entry.get("Value")
        return (
            [_answer_item(item) for item in items if isinstance(item, dict)]
            if isinstance(items, list)
            else []
        )
    return None


def _answer_item(item: dict[str, dict[str, object]]) -> Answer:
    values = {int(key.replace(",", ""), 16): _answer_value(element) for key, element in item.items()}
    return {tag: value for tag, value in values.items() if value is not None}


def _first_instance(view: IndexView, rid: RawId, level: Level) -> RawId | None:
    current: RawId | None = rid
    for _ in range(level, Level.INSTANCE):
        children = view.children(current) if current is not None else []
        current = children[0] if children else None
    return current


def _named_resources(view: IndexView, level: Level, keys: dict[int, str], every_value: bool) -> list[RawId]:
    """Resources of ``level`` whose identifier is one of the values given for it."""
    text = keys.get(IDENTIFIER_TAGS[level], "").strip()
    if not text and level == Level.STUDY:
        return _by_main_tag(view, level, ACCESSION_NUMBER, keys.get(ACCESSION_NUMBER, ""), every_value)
    return _by_main_tag(view, level, IDENTIFIER_TAGS[level], text, every_value)


def _by_main_tag(view: IndexView, level: Level, tag: int, text: str, every_value: bool) -> list[RawId]:
    """Orthanc's exact lookup of each value: normalized (``find p3`` names ``FIND_P3``), no wildcards;
    with ``every_value``, each value (an empty one too) must name a resource."""
    found: list[RawId] = []
    for value in (part.strip() for part in text.split("\\")):
        if "*" in value or "?" in value:
            raise QueryError(f"wildcards are not allowed in a retrieve: {value!r}")
        named = resources_with_identifier(view, level, tag, value) if value else []
        if every_value and not named:
            raise QueryError(f"no resource named {value!r} at the {level.name.lower()} level")
        found.extend(named)
    return list(dict.fromkeys(found))


# --- remote side: /modalities/{name}/query and /queries ----------------------------------------------


CHILD_QUERIES = {
    # The child queries of an answer, by the level of its query (Orthanc 1.10.1's sub-routes).
    Level.PATIENT: ("query-studies", "query-series", "query-instances"),
    Level.STUDY: ("query-series", "query-instances"),
    Level.SERIES: ("query-instances",),
    Level.INSTANCE: (),
}
CHILD_LEVELS = {"query-studies": Level.STUDY, "query-series": Level.SERIES, "query-instances": Level.INSTANCE}

_RETRIEVE_TAGS = (
    # What a retrieve keeps of an answer (Orthanc's DicomMoveScuJob), in tag order.
    ACCESSION_NUMBER,
    QUERY_RETRIEVE_LEVEL,
    IDENTIFIER_TAGS[Level.PATIENT],
    IDENTIFIER_TAGS[Level.STUDY],
    IDENTIFIER_TAGS[Level.SERIES],
    IDENTIFIER_TAGS[Level.INSTANCE],
)
_MOVE_TAGS = {
    # What a C-MOVE sends, by level, besides QueryRetrieveLevel (Orthanc's DicomControlUserConnection).
    Level.PATIENT: (IDENTIFIER_TAGS[Level.PATIENT],),
    Level.STUDY: (IDENTIFIER_TAGS[Level.STUDY],),
    Level.SERIES: (IDENTIFIER_TAGS[Level.STUDY], IDENTIFIER_TAGS[Level.SERIES]),
    Level.INSTANCE: (
        IDENTIFIER_TAGS[Level.STUDY],
        IDENTIFIER_TAGS[Level.SERIES],
        IDENTIFIER_TAGS[Level.INSTANCE],
    ),
}
_COUNTERS_ALLOWED = {
    Level.PATIENT: (0x00201200, 0x00201202, 0x00201204),
    Level.STUDY: (MODALITIES_IN_STUDY, 0x00201206, 0x00201208, SOP_CLASSES_IN_STUDY),
    Level.SERIES: (0x00201209,),
    Level.INSTANCE: (),
}
DATE_VRS = frozenset({"DA", "DT", "TM"})
UNABLE_TO_PROCESS = 0xC000


def _query_error(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def _allowed_at(level: Level) -> frozenset[int]:
    """Tags a normalized query keeps: main tags of the level and above, its counters, the character set."""
    tags = {tag for upper in Level if upper <= level for tag, _ in MAIN_TAGS[upper]}
    return frozenset(tags | set(_COUNTERS_ALLOWED[level]) | {SPECIFIC_CHARACTER_SET})


def _query_keys(document: dict[str, Any], name: str = "Query") -> dict[int, str]:
    """``{"PatientID": "x", "0008,0020": "..."}`` → tag → text; Orthanc's error otherwise."""
    query = document.get(name, {})
    details = f"Associative array of DICOM tags to strings expected in field: {name}"
    if not isinstance(query, dict):
        raise _query_error(details)
    keys: dict[int, str] = {}
    for key, value in query.items():
        if not isinstance(value, str):
            raise _query_error(details)
        try:
            keys[parse_tag(key)] = value
        except OrthancError:
            raise _query_error(details) from None
    return keys


@dataclass
class QueryRequest:
    """A ``POST /modalities/{name}/query`` body."""

    level: Level
    keys: dict[int, str]
    normalize: bool = True
    timeout: int | None = None


def parse_query_request(body: bytes) -> QueryRequest:
    document = json_object_body(body, details="Must provide a JSON object")
    if not isinstance(document.get("Level"), str):
        raise _query_error("The JSON body must contain field Level")
    level = parse_level(document["Level"])
    request = QueryRequest(level, _query_keys(document))
    normalize = document.get("Normalize", True)
    if not isinstance(normalize, bool):
        raise _query_error("Boolean value expected in field: Normalize")
    request.normalize = normalize
    if "Timeout" in document:
        timeout = document["Timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise _query_error("Integer value expected in field: Timeout")
        request.timeout = timeout
    return request


@dataclass
class MoveRequest:
    """A ``POST /modalities/{name}/move`` body; its resources are checked one by one as they are moved."""

    level: Level
    resources: list[Any]
    target: str | None = None
    local_aet: str | None = None
    timeout: int | None = None


def _optional_string(document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is not None and not isinstance(value, str):
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE)
    return value


def parse_move_request(body: bytes) -> MoveRequest:
    """``{"Level": ..., "Resources": [...], "TargetAet", "LocalAet", "Timeout"}`` with Orthanc's errors."""
    fields = "Must provide a JSON body containing fields Resources and Level"
    document = json_object_body(body, details=fields)
    if not isinstance(document.get("Resources"), list) or not isinstance(document.get("Level"), str):
        raise _query_error(fields)
    request = MoveRequest(parse_level(document["Level"]), document["Resources"])
    request.target = _optional_string(document, "TargetAet")
    request.local_aet = _optional_string(document, "LocalAet")
    if "Timeout" in document:
        timeout = document["Timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise _query_error("Integer value expected in field: Timeout")
        if timeout < 0:
            raise _query_error("Unsigned integer value expected in field: Timeout")
        request.timeout = timeout
    return request


def _move_keys(level: Level, resource: Any, character_set: str) -> dict[int, str]:
    """What a C-MOVE of one resource sends: its level and identifiers (Orthanc's MoveToModality)."""
    if not isinstance(resource, dict) or not all(isinstance(value, str) for value in resource.values()):
        raise _query_error()
    given = {parse_tag(key): value for key, value in resource.items()}
    keys = {SPECIFIC_CHARACTER_SET: character_set, QUERY_RETRIEVE_LEVEL: LEVEL_NAMES[level]}
    for tag in _MOVE_TAGS[level]:
        if tag not in given:
            raise OrthancError(ErrorCode.BAD_REQUEST)
        keys[tag] = given[tag]
    return keys


def _move_failure(node: RemoteNode, status: int) -> OrthancError:
    """Orthanc's error for a C-MOVE answered with a failure status: 422 for "unable to process"."""
    message = f'C-MOVE SCU to AET "{node.aet}" has failed with DIMSE status 0x{status:04X}'
    if status == UNABLE_TO_PROCESS:
        return OrthancError(
            ErrorCode.NETWORK_PROTOCOL,
            f"{message} (unable to process - resource not found ?)",
            http_status=422,
        )
    return OrthancError(ErrorCode.NETWORK_PROTOCOL, message)


@dataclass
class RemoteQuery:
    """A C-FIND made to a modality, kept for /queries with its answers (full tag form)."""

    id: str
    modality: str
    level: Level
    keys: dict[int, str]
    answers: list[TagJson]
    timeout: int | None = None

    def query_json(self) -> TagJson:
        """The query as asked, in full tag form."""
        return {
            tag_key(tag): {"Name": attribute_name(tag, None), "Type": "String", "Value": value}
            for tag, value in sorted(self.keys.items())
        }

    def answer(self, index: int) -> TagJson:
        if not 0 <= index < len(self.answers):
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
        return self.answers[index]


def _answer_text(answer: TagJson, tag: int) -> str | None:
    entry = answer.get(tag_key(tag))
    if entry is None or entry.get("Type") != "String":
        return None
    return entry["Value"]


def _wire_keys(level: Level, keys: dict[int, str], normalize: bool, manufacturer: str) -> dict[int, str]:
    """What the C-FIND sends: the keys (those of the level when normalizing), the identifiers asked for."""
    allowed = _allowed_at(level)
    sent = {tag: value for tag, value in keys.items() if not normalize or tag in allowed}
    for upper in Level:
        if upper <= level:
            sent.setdefault(IDENTIFIER_TAGS[upper], "")
    if level >= Level.STUDY:
        sent.setdefault(ACCESSION_NUMBER, "")
    sent[QUERY_RETRIEVE_LEVEL] = LEVEL_NAMES[level]
    for tag, value in list(sent.items()):
        if manufacturer == "GenericNoUniversalWildcard" and value == "*":
            sent[tag] = ""
        elif manufacturer == "GenericNoWildcardInDates" and dictionary_vr(tag, None) in DATE_VRS:
            sent[tag] = value.replace("*", "")
    return sent


class QueryService:
    """Queries made to modalities, kept in memory: ``QueryRetrieveSize`` of them, least recently used go."""

    def __init__(
        self, config: Config, registry: ModalityRegistry, default_encoding: DefaultEncoding, engine: JobEngine
    ):
        self.config = config
        self.registry = registry
        self.default_encoding = default_encoding
        self.engine = engine
        self._queries: OrderedDict[str, RemoteQuery] = OrderedDict()
        engine.register(RetrieveJob.type_name, lambda data: RetrieveJob(_retrieve_decoder.decode(data)))

    def ids(self) -> list[str]:
        return sorted(self._queries)

    def get(self, query_id: str) -> RemoteQuery:
        query = self._queries.get(query_id)
        if query is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        self._queries.move_to_end(query_id)
        return query

    def delete(self, query_id: str) -> None:
        self._queries.pop(query_id, None)

    async def query(self, name: str, request: QueryRequest) -> RemoteQuery:
        """C-FIND the modality and keep the answers."""
        modality = self.registry.require(name)
        allowed = _allowed_at(request.level)
        keys = {tag: value for tag, value in request.keys.items() if not request.normalize or tag in allowed}
        wire = _wire_keys(request.level, request.keys, request.normalize, modality.manufacturer)
        node = self.registry.node(modality, timeout=request.timeout)
        default_set = DEFAULT_ENCODINGS.get(self.default_encoding.name, "ISO_IR 100")
        answers = await asyncio.to_thread(_find_answers, node, wire, request.level, default_set)
        query = RemoteQuery(str(uuid.uuid4()), name, request.level, keys, answers, request.timeout)
        self._queries[query.id] = query
        while len(self._queries) > max(1, self.config.query_retrieve_size):
            self._queries.popitem(last=False)
        return query

    async def find_answers(self, name: str, level: Level, keys: dict[int, str]) -> list[TagJson]:
        """A C-FIND of ``keys`` as they are (with the character set and the level) and its answers,
        not kept as a query (the deprecated find-* shortcuts)."""
        modality = self.registry.require(name)
        default_set = DEFAULT_ENCODINGS.get(self.default_encoding.name, "ISO_IR 100")
        wire = {SPECIFIC_CHARACTER_SET: default_set, **keys, QUERY_RETRIEVE_LEVEL: LEVEL_NAMES[level]}
        node = self.registry.node(modality)
        return await asyncio.to_thread(_find_answers, node, wire, level, default_set)

    async def find_worklist_answers(self, name: str, identifier: Dataset) -> list[TagJson]:
        """A Modality Worklist C-FIND and its answers in full tag form."""
        node = self.registry.node(self.registry.require(name))
        default_set = DEFAULT_ENCODINGS.get(self.default_encoding.name, "ISO_IR 100")
        return await asyncio.to_thread(_worklist_answers, node, identifier, default_set)

    async def move(self, name: str, request: MoveRequest) -> None:
        """C-MOVE each resource from the modality to the target, over one association opened at need.

        In the study root model at every level, the patient level included, as Orthanc 1.10.1 does.
        """
        modality = self.registry.require(name)
        node = self.registry.node(modality, request.local_aet, request.timeout)
        target = self.config.dicom_aet if request.target is None else request.target
        character_set = DEFAULT_ENCODINGS.get(self.default_encoding.name, "ISO_IR 100")
        association: scu.MoveAssociation | None = None
        try:
            for resource in request.resources:
                keys = _move_keys(request.level, resource, character_set)
                if association is None:
                    association = await asyncio.to_thread(scu.MoveAssociation, node, patient_root=False)
                await asyncio.to_thread(association.move, keys, target)
        except scu.DimseStatusError as error:
            raise _move_failure(node, error.status) from error
        except scu.DicomNetworkError as error:
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, str(error)) from error
        finally:
            if association is not None:
                await asyncio.to_thread(association.close)

    async def child_query(self, query_id: str, index: int, child: str, body: bytes) -> RemoteQuery:
        """``POST /queries/{id}/answers/{index}/query-{level}``: a query below one answer."""
        parent = self.get(query_id)
        answer = parent.answer(index)
        if child not in CHILD_QUERIES[parent.level]:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        document = _json_object(body)
        keys = _query_keys(document)
        for tag in _MOVE_TAGS[parent.level]:  # what Orthanc copies: the identifiers a C-MOVE would send
            value = _answer_text(answer, tag)
            if value is not None:
                keys[tag] = value
        request = QueryRequest(CHILD_LEVELS[child], keys, timeout=parent.timeout)
        return await self.query(parent.modality, request)

    async def retrieve(self, query_id: str, index: int | None, body: bytes) -> dict[str, Any]:
        """C-MOVE one answer, or all (``index`` None): the job's content, or its ID when asynchronous."""
        job, options = self._retrieve_job(query_id, index, body)
        priority = priority_field(options)
        if is_synchronous(options):
            return await run_synchronously(self.engine, job, priority)
        job_id = await self.engine.submit(job, priority)
        return {"ID": job_id, "Path": f"/jobs/{job_id}"}

    def _retrieve_job(
        self, query_id: str, index: int | None, body: bytes
    ) -> tuple["RetrieveJob", dict[str, Any]]:
        query = self.get(query_id)
        answers = query.answers if index is None else [query.answer(index)]
        target, options = _retrieve_target(body, self.config.dicom_aet)
        modality = self.registry.require(query.modality)
        timeout = integer_field(options, "Timeout", None)
        node = self.registry.node(modality, timeout=timeout if timeout is not None else query.timeout)
        items = [
            {tag: text for tag in _RETRIEVE_TAGS if (text := _answer_text(answer, tag)) is not None}
            for answer in answers
        ]
        state = RetrieveJobState(node, int(query.level), items, target, _dicom_format(options))
        return RetrieveJob(state), options


def _json_object(body: bytes) -> dict[str, Any]:
    """A child query's body: a JSON object, or null read as one without members (as JsonCpp does)."""
    document = json_body(body, details="Must provide a JSON object")
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise _query_error("Must provide a JSON object")
    return document


def _retrieve_target(body: bytes, local_aet: str) -> tuple[str, dict[str, Any]]:
    """The target AET and the options of a retrieve: a JSON object, or the AET as text (ours when empty).

    A JSON ``TargetAet`` is taken as given, even empty: as Orthanc, the C-MOVE then fails for
    want of a valid destination (500), instead of moving the studies somewhere not asked for.
    JSON that is not an object is refused (Orthanc: "Bad file format" for null, a 500 for others).
    """
    try:
        document = read_json(body)
    except NotJsonError:
        text = body.decode("utf-8", errors="replace").strip()
        return text or local_aet, {}
    if not isinstance(document, dict):
        raise _query_error()
    target = document.get("TargetAet", local_aet)
    if not isinstance(target, str):
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE)
    return target, document


def _dicom_format(document: dict[str, Any]) -> str:
    """Orthanc's ``Full``, ``Short`` and ``Simplify`` options of a job's JSON (short by default)."""
    for name in ("Full", "Simplify", "Short"):
        if document.get(name) is True:
            return name
    return "Short"


def _find_answers(node: RemoteNode, keys: dict[int, str], level: Level, default_set: str) -> list[TagJson]:
    """C-FIND (in a thread) and the answers in full tag form."""
    try:
        datasets = scu.find(node, keys, patient_root=level == Level.PATIENT)
    except scu.DicomNetworkError as error:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, str(error)) from error
    walker = TagWalker(python_encodings(None, default_set), True, default_set)
    return [walker.full(dataset) for dataset in datasets]


def _worklist_answers(node: RemoteNode, identifier: Dataset, default_set: str) -> list[TagJson]:
    try:
        datasets = scu.find_worklist(node, identifier)
    except scu.ServiceNotSupportedError as error:
        raise OrthancError(ErrorCode.NO_C_FIND_AT_REMOTE, f"Remote AET is {node.aet}") from error
    except scu.DicomNetworkError as error:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, str(error)) from error
    walker = TagWalker(python_encodings(None, default_set), True, default_set)
    return [walker.full(dataset) for dataset in datasets]


class RetrieveJobState(msgspec.Struct, array_like=True):
    """What a retrieve job saves: the modality, the answers' identifiers, the target."""

    node: RemoteNode
    level: int
    items: list[dict[int, str]]
    target: str
    form: str


_retrieve_encoder = msgspec.msgpack.Encoder()
_retrieve_decoder = msgspec.msgpack.Decoder(RetrieveJobState)


class RetrieveJob(Job):
    """C-MOVEs of query answers to a target, over one association: Orthanc's ``DicomMoveScu`` job."""

    type_name = "DicomMoveScu"

    def __init__(self, state: RetrieveJobState):
        self.state = state
        self.level = Level(state.level)
        self._association: scu.MoveAssociation | None = None

    @property
    def total_steps(self) -> int:
        return len(self.state.items)

    async def start(self, steps_done: int) -> int:
        await self._close()
        return steps_done

    async def run_step(self, index: int) -> None:
        item = self.state.items[index]
        keys = {QUERY_RETRIEVE_LEVEL: LEVEL_NAMES[self.level]}
        keys.update({tag: item[tag] for tag in _MOVE_TAGS[self.level] if tag in item})
        try:
            if self._association is None:
                self._association = await asyncio.to_thread(
                    scu.MoveAssociation, self.state.node, self.level == Level.PATIENT
                )
            await asyncio.to_thread(self._association.move, keys, self.state.target)
        except scu.DicomNetworkError as error:
            await self._close()
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, str(error)) from error

    async def _close(self) -> None:
        association, self._association = self._association, None
        if association is not None:
            await asyncio.to_thread(association.close)

    async def finish(self) -> None:
        await self._close()

    async def abort(self) -> None:
        await self._close()

    def content(self) -> dict[str, Any]:
        return {
            "Description": "REST API",
            "LocalAet": self.state.node.local_aet,
            "Query": [self._item_json(item) for item in self.state.items],
            "RemoteAet": self.state.node.aet,
        }

    def _item_json(self, item: dict[int, str]) -> TagJson:
        full = {
            tag_key(tag): {"Name": attribute_name(tag, None), "Type": "String", "Value": value}
            for tag, value in sorted(item.items())
        }
        if self.state.form == "Full":
            return full
        return simplify(full) if self.state.form == "Simplify" else shorten(full)

    def save(self) -> bytes:
        return _retrieve_encoder.encode(self.state)
