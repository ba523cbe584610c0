"""POST /tools/find: the request as Orthanc 1.10.1 reads it, and its answer from the index.

The request is checked in Orthanc's order, with Orthanc's error codes and
texts: the body must be a JSON object, ``Level`` a string, ``Query``
present, ``CaseSensitive`` a Boolean, ``Limit`` and ``Since`` 32-bit
non-negative integers; then the level is parsed, then the members of
``Query`` in sorted order. A member whose value is ``""`` is no constraint
at all (it matches resources without the tag too); any other value becomes
a constraint the way Orthanc builds one from the text:

- ``a-b``, ``a-``, ``-b`` on a date or time (DA, DT, TM): a range;
- ``a\\b``: a list of values, each compared whole (no wildcards in a list);
- ``*`` and ``?``: wildcards, allowed on text VRs only (400 otherwise);
- anything else: equality.

Query keys are DCMTK's attribute names (``PatientName``,
``RETIRED_OtherPatientIDs``) or tags (``0010,0010``, ``00100010``). The
matching rules themselves and the plan live in :mod:`fastpacs.index.find`.

A query runs on the event loop while it stays cheap (index lookups and a
few hundred candidates); beyond that it is run again in a thread, with its
own read transaction.
"""

import asyncio
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from fastpacs.dicom.dictionary import dictionary_vr, parse_tag
from fastpacs.dicom.ids import Level, format_id
from fastpacs.dicom.tags import tag_key
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.find import Constraint, FindExecution, FindQuery, Kind, WorkLimitError
from fastpacs.json_body import json_object_body
from fastpacs.services.resources import ResourceJson, TagsFormat, formatted, resource_json, tags_format_of

WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
"""VRs on which DICOM (PS3.4 C.2.2.2.4) and Orthanc allow wildcard matching."""
RANGE_VRS = frozenset({"DA", "DT", "TM"})

INLINE_WORK = 3000
"""Work (≈ µs, see index.find) a query may take on the event loop before it moves to a thread."""
WORK_PER_EXPANDED = 40

INT32 = range(-(2**31), 2**31)
INT64_MAX = 2**63 - 1
UNHANDLED = "An unhandled exception was generated inside the HTTP server"

_LEVEL_ALIASES = {"image": Level.INSTANCE, "images": Level.INSTANCE}
"""DCMTK reads ``gggg,eeee`` with ``sscanf("%x,%x")``: leading text is enough (``0010,0020 `` works)."""


@dataclass
class FindRequest:
    query: FindQuery
    expand: bool
    tags_format: TagsFormat = TagsFormat.HUMAN


def _bad_request(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, details)


def parse_find_request(body: bytes) -> FindRequest:
    """Read a POST /tools/find body; :class:`OrthancError` as Orthanc answers a bad one."""
    document = json_object_body(body, ErrorCode.BAD_REQUEST, "The body must contain a JSON object")
    level_name = document.get("Level")
    if not isinstance(level_name, str):
        raise _bad_request('Field "Level" is missing, or should be a string')
    if "Query" not in document:
        raise _bad_request('Field "Query" is missing, or should be a JSON object')
    case_sensitive = document.get("CaseSensitive", False)
    if not isinstance(case_sensitive, bool):
        raise _bad_request('Field "CaseSensitive" should be a Boolean')
    limit = _count_field(document, "Limit")
    since = _count_field(document, "Since")
    expand = _json_bool(document.get("Expand"))
    tags_format = tags_format_of(document)
    level = parse_level(level_name)
    query = document["Query"]
    if query is None:
        query = {}
    if not isinstance(query, dict):
        raise OrthancError(ErrorCode.INTERNAL_ERROR, UNHANDLED)
    constraints = []
    for key in sorted(query):
        text = query[key]
        if not isinstance(text, str):
            raise _bad_request(f'Tag "{key}" should be associated with a string')
        if text:  # an empty value is universal matching: no constraint
            constraint = make_constraint(_query_tag(key), text, case_sensitive)
            if constraint is not None:
                constraints.append(constraint)
    return FindRequest(FindQuery(level, constraints, since, limit), expand, tags_format)


def _count_field(document: dict[str, Any], name: str) -> int:
    """``Limit`` or ``Since``: absent is 0; Orthanc's three kinds of refusal otherwise."""
    if name not in document:
        return 0
    value = document[name]
    if isinstance(value, bool) or not isinstance(value, int) or not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise _bad_request(f'Field "{name}" should be an integer')
    if value not in INT32:
        raise OrthancError(ErrorCode.INTERNAL_ERROR, UNHANDLED)
    if value < 0:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f'Field "{name}" should be a positive integer')
    return value


def _json_bool(value: Any) -> bool:
    """``Expand`` is read as JsonCpp's ``asBool()``: null, Booleans and numbers convert, the rest fails."""
    if value is None or isinstance(value, bool | int | float):
        return bool(value)
    raise OrthancError(ErrorCode.INTERNAL_ERROR, UNHANDLED)


def parse_level(name: str) -> Level:
    try:
        return _LEVEL_ALIASES.get(name.lower()) or Level.from_name(name)
    except KeyError:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE) from None


def _no_wildcards_allowed(tag: int) -> OrthancError:
    return OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Wildcards are not allowed on tag {tag_key(tag)}")


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


@lru_cache(maxsize=1024)
def _query_tag(key: str) -> int:
    """The tag of a query key (clients repeat the same few keys: each is parsed once)."""
    return parse_tag(key)


def make_constraint(tag: int, text: str, case_sensitive: bool) -> Constraint | None:
    """The constraint Orthanc makes of a non-empty query value (``None``: a range open at both ends)."""
    vr = dictionary_vr(tag, None)
    if vr in RANGE_VRS and "-" in text:
        lower, _, upper = text.partition("-")
        if _has_wildcard(text):
            raise _no_wildcards_allowed(tag)
        return Constraint(tag, Kind.RANGE, (lower, upper), case_sensitive) if lower or upper else None
    if "\\" in text:
        return Constraint(tag, Kind.LIST, tuple(text.split("\\")), case_sensitive)
    if _has_wildcard(text):
        if vr not in WILDCARD_VRS:
            raise _no_wildcards_allowed(tag)
        return Constraint(tag, Kind.WILDCARD, (text,), case_sensitive)
    return Constraint(tag, Kind.EQUAL, (text,), case_sensitive)


class FindService:
    """Runs find queries on snapshots of the index.

    ``limit_find_results`` and ``limit_find_instances`` (0: none) are Orthanc's
    LimitFindResults and LimitFindInstances, which 1.10.1 applies to /tools/find
    too: only the first that many plus one resources passing the database phase,
    in insertion order, are candidates (see :attr:`FindQuery.candidates`).
    """

    def __init__(self, database: Database, limit_find_results: int = 0, limit_find_instances: int = 0):
        self.database = database
        self.limits = {level: limit_find_results for level in Level} | {Level.INSTANCE: limit_find_instances}

    async def find(self, request: FindRequest) -> list[str] | list[ResourceJson]:
        """IDs (or, with Expand, the resources' JSON) of the resources matching the request."""
        limit = self.limits[request.query.level]
        if limit:
            request = replace(request, query=replace(request.query, candidates=limit + 1))
        try:
            return self._answer(request, INLINE_WORK)
        except WorkLimitError:
            return await asyncio.to_thread(self._answer, request, None)

    def _answer(self, request: FindRequest, max_work: float | None) -> list[str] | list[ResourceJson]:
        with self.database.read() as view:
            execution = FindExecution(view, request.query, max_work)
            found = execution.run()
            if not request.expand:
                return [format_id(rid) for rid in found]
            if max_work is not None and execution.work + WORK_PER_EXPANDED * len(found) > max_work:
                raise WorkLimitError
            answers = []
            for rid in found:
                record = execution.record(rid)
                assert record is not None
                answers.append(formatted(resource_json(view, rid, record), request.tags_format))
            return answers
