"""/tools/find inside the index: matching rules, secondary indexes, query plan.

Orthanc 1.10.1 answers a find in two phases, and a client can see where they
differ, so fastpacs reproduces both:

1. the *database* phase selects candidates with SQL on the main DICOM tags
   of the query level and of its ancestors. The tags Orthanc stores as
   identifiers (:data:`IDENTIFIER_TAGS`) are compared in a normalized form
   (see :func:`identifier_key`: ASCII only, upper case, ``%`` and ``_`` made
   spaces, trimmed); the other main tags as SQLite compares them: ``lower()``
   and ``LIKE`` fold ASCII letters only, and ``_`` (Orthanc's ``?``) is one
   character.
2. the *matching* phase checks every constraint on the tags of the
   candidate: case folding covers accented letters, and ``?`` is one byte of
   UTF-8. Only the main tags of the query level and its ancestors are known
   there (a tag of a lower level never matches), unless a constraint names a
   tag that is not a main tag: then every constraint is checked on all the
   tags of one instance of the resource, its first one.

A resource is an answer when it passes both. ``ModalitiesInStudy`` at study
level is the exception: Orthanc runs the query at series level instead, with a
constraint on ``Modality`` in its place (the other constraints kept, so a main
tag of the series level is now matched too), and answers the studies of the
matching series once each, in the order of their StudyInstanceUID.

Secondary indexes, kept by :func:`index_resource` and
:func:`unindex_resource` when a resource is created or destroyed (main tags
never change afterwards):

=============  ===================================  ===========================================
database       key                                  value
=============  ===================================  ===========================================
find_values    level + tag + database key of value  resource id (dupsort)
find_ids       level + id (patients/studies/series)  empty: a level in ID order
=============  ===================================  ===========================================

The database key (:func:`database_key`) is the normalized identifier, or the
value with ASCII letters lower-cased, so the keys of one tag sort the way the
database phase compares them: an equality is one key, a wildcard the keys
sharing its prefix, a date range an interval. The plan counts the
candidates each indexed constraint gives (exactly for keys, by a scan
stopped as soon as it exceeds the best so far for prefixes and intervals),
drives the query with the most selective one and checks the others on each
candidate. Answers come in Orthanc's order: patients, studies and series by
ID, instances in insertion order, studies found through ModalitiesInStudy by
StudyInstanceUID.
"""

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

import lmdb
import msgspec

from fastpacs.dicom.ids import Level, RawId
from fastpacs.dicom.main_tags import MAIN_TAGS
from fastpacs.dicom.tags import tag_key
from fastpacs.index.schema import MAX_KEY_SIZE, RESOURCE_DECODER, Resource
from fastpacs.index.view import ID_SIZE, SEQ_SIZE, IndexView

MODALITY = 0x00080060
MODALITIES_IN_STUDY = 0x00080061

IDENTIFIER_TAGS = frozenset(
    {
        0x00100020,  # PatientID
        0x00100010,  # PatientName
        0x00100030,  # PatientBirthDate
        0x0020000D,  # StudyInstanceUID
        0x00080050,  # AccessionNumber
        0x00081030,  # StudyDescription
        0x00080020,  # StudyDate
        0x0020000E,  # SeriesInstanceUID
        0x00080018,  # SOPInstanceUID
    }
)
"""Main tags Orthanc keeps in its identifier table, compared in normalized form by its database."""
LEVEL_IDENTIFIERS = {
    Level.PATIENT: 0x00100020,  # PatientID
    Level.STUDY: 0x0020000D,  # StudyInstanceUID
    Level.SERIES: 0x0020000E,  # SeriesInstanceUID
    Level.INSTANCE: 0x00080018,  # SOPInstanceUID
}


def _main_tag_levels() -> dict[int, tuple[Level, str]]:
    levels: dict[int, tuple[Level, str]] = {}
    for level in Level:
        for tag, keyword in MAIN_TAGS[level]:
            levels.setdefault(tag, (level, keyword))  # ImageOrientationPatient: series and instance
    return levels


MAIN_TAG_LEVELS = _main_tag_levels()
"""Main tag → the (highest) level that keeps it, and its keyword in ``Resource.main_tags``."""

_HEADER_SIZE = 5
MAX_VALUE_KEY = MAX_KEY_SIZE - _HEADER_SIZE
_AFTER_EVERY_KEY = b"\xff"  # never in UTF-8, so above every value key
_IDENTIFIER_TABLE = bytes(
    0x20 if byte in (0x25, 0x5F) else byte - 0x20 if 0x61 <= byte <= 0x7A else byte for byte in range(256)
)
_IDENTIFIER_DROPPED = bytes(byte for byte in range(256) if byte < 0x20 or byte >= 0x7F)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_FULL_TAGS_DECODER = msgspec.json.Decoder(dict[str, dict[str, object]])


# --- how values compare --------------------------------------------------------------------------


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def identifier_key(value: str) -> bytes:
    """Orthanc's normalized identifier: printable ASCII, upper case, ``%`` and ``_`` as spaces, trimmed."""
    return _utf8(value).translate(_IDENTIFIER_TABLE, _IDENTIFIER_DROPPED).strip(b" ")


def sql_lower(value: str) -> str:
    """SQLite's ``lower()``: ASCII letters only."""
    return value.translate(_ASCII_LOWER)


def upper_with_accents(text: str) -> str:
    """Orthanc's case folding: every letter to upper case, one character for one (``ß`` stays)."""
    upper = text.upper()
    if len(upper) == len(text):
        return upper
    return "".join(folded if len(folded := char.upper()) == 1 else char for char in text)


def database_key(tag: int, value: str) -> bytes:
    """The form in which the database phase compares a value of this main tag."""
    if tag in IDENTIFIER_TAGS:
        return identifier_key(value)[:MAX_VALUE_KEY]
    return _utf8(sql_lower(value))[:MAX_VALUE_KEY]


def _index_key(level: Level, tag: int, value_key: bytes) -> bytes:
    return bytes([level]) + tag.to_bytes(4, "big") + value_key


def _wildcard_regex(pattern: bytes) -> re.Pattern[bytes]:
    """Orthanc's ``*`` and ``?`` on bytes: ``?`` is one byte, not one character."""
    parts = [
        b".*" if byte == 0x2A else b"." if byte == 0x3F else re.escape(bytes([byte])) for byte in pattern
    ]
    return re.compile(b"".join(parts), re.DOTALL)


def _like_regex(pattern: str) -> re.Pattern[str]:
    """SQLite ``LIKE`` on ASCII-lower-cased text, Orthanc's ``*``/``?`` standing for ``%``/``_``."""
    parts = [".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _literal_prefix(pattern: bytes) -> bytes:
    cut = len(pattern)
    for wildcard in (b"*", b"?"):
        position = pattern.find(wildcard)
        if position >= 0:
            cut = min(cut, position)
    return pattern[:cut]


class Kind(Enum):
    EQUAL = "equal"
    LIST = "list"
    RANGE = "range"
    WILDCARD = "wildcard"


ValueRange = tuple[bytes, bytes]
"""Inclusive bounds on database keys of one tag."""

_EVERY_VALUE: list[ValueRange] = [(b"", _AFTER_EVERY_KEY)]


class Constraint:
    """One condition of a find on one tag, with both phases' ways of checking it.

    ``operands``: the value (EQUAL, WILDCARD), the items (LIST), or the lower
    and upper bounds (RANGE, ``""`` for an open end).
    """

    def __init__(self, tag: int, kind: Kind, operands: tuple[str, ...], case_sensitive: bool):
        self.tag = tag
        self.kind = kind
        self.operands = operands
        self.case_sensitive = case_sensitive
        self.is_identifier = tag in IDENTIFIER_TAGS
        self._open = tuple(not operand for operand in operands)
        """For a range: which ends are open (Orthanc tests the text before normalizing it)."""
        folded = tuple(self._fold(operand) for operand in operands)
        self._folded = folded
        self._folded_set = frozenset(folded)
        if kind == Kind.WILDCARD:
            self._pattern = _wildcard_regex(_utf8(folded[0]))
        if self.is_identifier:
            self._keys = tuple(identifier_key(operand) for operand in operands)
            if kind == Kind.WILDCARD:
                self._like = _wildcard_regex(self._keys[0])  # ASCII only: a byte is a character
        else:
            lowered = tuple(sql_lower(operand) for operand in operands)
            self._sql = operands if case_sensitive else lowered
            if kind == Kind.WILDCARD:
                self._sql_like = _like_regex(lowered[0])

    def __repr__(self) -> str:
        return f"Constraint({self.tag:08x}, {self.kind.value}, {self.operands!r}, {self.case_sensitive})"

    def on_tag(self, tag: int) -> "Constraint":
        """The same condition on another tag (ModalitiesInStudy's made a condition on Modality)."""
        return Constraint(tag, self.kind, self.operands, self.case_sensitive)

    def _fold(self, text: str) -> str:
        return text if self.case_sensitive else upper_with_accents(text)

    def matches(self, value: str) -> bool:
        """The matching phase (Orthanc's in-memory check)."""
        folded = self._fold(value)
        if self.kind == Kind.EQUAL:
            return folded == self._folded[0]
        if self.kind == Kind.LIST:
            return folded in self._folded_set
        if self.kind == Kind.RANGE:
            return self._in_range(folded, self._folded)
        return self._pattern.fullmatch(_utf8(folded)) is not None

    def database_matches(self, value: str) -> bool:
        """The database phase, for a main tag of the query level or above."""
        if self.is_identifier:
            return self._compare(identifier_key(value), self._keys, self._like_identifier)
        if self.kind == Kind.WILDCARD:
            return self._sql_like.fullmatch(sql_lower(value)) is not None
        return self._compare(value if self.case_sensitive else sql_lower(value), self._sql, None)

    def _like_identifier(self, key: bytes) -> re.Match[bytes] | None:
        return self._like.fullmatch(key)

    def _compare(self, value, operands, like) -> bool:
        if self.kind == Kind.EQUAL:
            return value == operands[0]
        if self.kind == Kind.LIST:
            return value in operands
        if self.kind == Kind.RANGE:
            return self._in_range(value, operands)
        return like(value) is not None

    def _in_range(self, value, bounds) -> bool:
        open_low, open_high = self._open
        return (open_low or value >= bounds[0]) and (open_high or value <= bounds[1])

    def value_ranges(self) -> list[ValueRange]:
        """Intervals of database keys holding every value the database phase can accept."""
        if self.kind in (Kind.EQUAL, Kind.LIST):
            keys = {database_key(self.tag, operand) for operand in self.operands}
            return [(key, key) for key in sorted(keys)]
        if self.kind == Kind.WILDCARD:
            pattern = self._keys[0] if self.is_identifier else _utf8(sql_lower(self.operands[0]))
            prefix = _literal_prefix(pattern)[:MAX_VALUE_KEY]
            return [(prefix, prefix + _AFTER_EVERY_KEY)] if prefix else _EVERY_VALUE
        lower, upper = self.operands
        if not self.is_identifier and self.case_sensitive and not _orders_like_lowered(lower + upper):
            return _EVERY_VALUE
        low = database_key(self.tag, lower) if lower else b""
        high = (identifier_key(upper) if self.is_identifier else _utf8(sql_lower(upper))) if upper else b""
        return [(low, high or _AFTER_EVERY_KEY)]


def _orders_like_lowered(bound: str) -> bool:
    """Whether raw comparisons against ``bound`` keep their outcome on ASCII-lower-cased values.

    True when the bound has no character between ``A`` and ``z``: a value's
    upper-case letter then compares with the bound's character as its lower
    case does (both above it). Dates and times always qualify.
    """
    return not any("A" <= char <= "z" for char in bound)


# --- the secondary indexes -----------------------------------------------------------------------


def _entries(level: Level, rid: RawId, record: Resource) -> Iterator[bytes]:
    for tag, keyword in MAIN_TAGS[level]:
        value = record.main_tags.get(keyword)
        if value is not None:
            yield _index_key(level, tag, database_key(tag, value))


def index_resource(txn: lmdb.Transaction, dbs: dict, level: Level, rid: RawId, record: Resource) -> None:
    """Add a new resource to the find indexes."""
    for key in _entries(level, rid, record):
        txn.put(key, rid, db=dbs["find_values"])
    if level != Level.INSTANCE:
        txn.put(bytes([level]) + rid, b"", db=dbs["find_ids"])


def unindex_resource(txn: lmdb.Transaction, dbs: dict, level: Level, rid: RawId, record: Resource) -> None:
    """Remove a destroyed resource from the find indexes."""
    for key in _entries(level, rid, record):
        txn.delete(key, rid, db=dbs["find_values"])
    if level != Level.INSTANCE:
        txn.delete(bytes([level]) + rid, db=dbs["find_ids"])


# --- the query -----------------------------------------------------------------------------------


@dataclass
class FindQuery:
    """A parsed find request: the level, the constraints, the paging (``limit`` 0: no limit)."""

    level: Level
    constraints: list[Constraint]
    since: int = 0
    limit: int = 0
    candidates: int = 0
    """At most this many resources passing the database phase are matched, the first ones in insertion
    order (0: all): Orthanc's LimitFindResults (LimitFindInstances for instances) plus one, the SQL
    LIMIT of its database phase."""


class WorkLimitError(Exception):
    """The query needs more work than the caller allowed (run it off the event loop)."""


@dataclass
class _Placed:
    """A constraint with its place in the plan: where its tag lives relative to the query level."""

    constraint: Constraint
    level: Level | None
    """The level whose main tags hold the tag; ``None`` for a tag that is not a main tag."""
    keyword: str = ""


@dataclass
class _Driver:
    level: Level
    tag: int
    ranges: list[ValueRange]
    estimate: float


@dataclass
class _Plan:
    database: list[_Placed] = field(default_factory=list)
    """Main tags of the query level or above: both phases."""
    lower: list[_Placed] = field(default_factory=list)
    """Main tags of a lower level: the matching phase only."""
    other: list[_Placed] = field(default_factory=list)
    """Tags that are not main tags: the matching phase only, on an instance's tags."""

    @property
    def reads_instances(self) -> bool:
        return bool(self.other)


WORK_PER_KEY = 1
WORK_PER_CANDIDATE = 4
WORK_PER_INSTANCE_TAGS = 60
"""Relative costs (≈ microseconds) of the steps, for the caller's work limit."""


class FindExecution:
    """One find query run on one snapshot of the index."""

    def __init__(self, view: IndexView, query: FindQuery, max_work: float | None = None):
        self.view = view
        self.query = query
        self.max_work = max_work
        self.work = 0.0
        constraints = query.constraints
        self.by_modalities_in_study = query.level == Level.STUDY and any(
            constraint.tag == MODALITIES_IN_STUDY for constraint in constraints
        )
        """Whether the query runs at series level, its answers grouped by study (see the module)."""
        if self.by_modalities_in_study:
            constraints = [
                constraint.on_tag(MODALITY) if constraint.tag == MODALITIES_IN_STUDY else constraint
                for constraint in constraints
            ]
        self.level = Level.SERIES if self.by_modalities_in_study else query.level
        """The level the constraints are matched at."""
        self.sample_series: dict[RawId, RawId] = {}
        """With ModalitiesInStudy: each study answered → its first matching series (Orthanc's sample)."""
        self.complete = True
        """False when the database phase had more candidates than ``query.candidates`` allows (C-FIND's
        LimitFindResults/LimitFindInstances): some matches may be missing, and a C-FIND then ends with
        Orthanc's 0xFE00. (Its answers, at most the candidates, are never cut at ``limit`` otherwise.)"""
        self.plan = self._place(constraints)
        self._records: dict[RawId, Resource] = {}
        self._values = view.txn.cursor(db=view.dbs["find_values"])

    def _spend(self, amount: float) -> None:
        self.work += amount
        if self.max_work is not None and self.work > self.max_work:
            raise WorkLimitError

    def _place(self, constraints: list[Constraint]) -> _Plan:
        plan = _Plan()
        for constraint in constraints:
            main = MAIN_TAG_LEVELS.get(constraint.tag)
            if main is None:
                plan.other.append(_Placed(constraint, None))
            elif main[0] <= self.level:
                plan.database.append(_Placed(constraint, main[0], main[1]))
            else:
                plan.lower.append(_Placed(constraint, main[0], main[1]))
        return plan

    # --- answer

    def run(self) -> list[RawId]:
        """IDs of the matching resources, in Orthanc's order, ``since`` skipped, at most ``limit``."""
        if self.plan.lower and not self.plan.reads_instances:
            return []  # a lower level's main tag is unknown to the matching phase
        if self.by_modalities_in_study:
            return self._studies_of_matching_series()
        since, limit = self.query.since, self.query.limit
        answers: list[RawId] = []
        skipped = 0
        for rid in self._matching():
            if skipped < since:
                skipped += 1
                continue
            answers.append(rid)
            if limit and len(answers) >= limit:
                break
        return answers

    def _matching(self) -> Iterator[RawId]:
        for rid, record in self._ordered_candidates():
            if self._accepts(rid, record):
                yield rid

    def _studies_of_matching_series(self) -> list[RawId]:
        """The studies of the matching series, each once, by StudyInstanceUID, paged as Orthanc 1.10.1 does.

        A study is named by the first matching series (in ID order) with its
        StudyInstanceUID. The page is the slice ``[Since, Limit)``: Limit is
        where the answers stop, and without a Limit, Since is ignored.
        """
        studies: dict[str, RawId] = {}
        for rid in self._matching():
            series = self.record(rid)
            assert series is not None and series.parent is not None
            study = self.record(series.parent)
            uid = study.main_tags.get("StudyInstanceUID") if study is not None else None
            if uid is not None and uid not in studies:
                studies[uid] = series.parent
                self.sample_series[series.parent] = rid
        ordered = [studies[uid] for uid in sorted(studies)]  # code point order: UTF-8 byte order
        since, limit = self.query.since, self.query.limit
        return ordered[since:limit] if limit else ordered

    # --- records

    def record(self, rid: RawId) -> Resource | None:
        record = self._records.get(rid)
        if record is None:
            data = self.view.txn.get(rid, db=self.view.dbs["resources"])
            if data is None:
                return None
            record = self._records[rid] = RESOURCE_DECODER.decode(data)
        return record

    def _ancestor(self, record: Resource, level: Level) -> Resource | None:
        current: Resource | None = record
        while current is not None and current.level > level:
            current = self.record(current.parent) if current.parent is not None else None
        return current

    # --- candidates

    def _ordered_candidates(self) -> Iterator[tuple[RawId, Resource]]:
        driver = self._choose_driver()
        if self.query.candidates:
            yield from self._first_candidates(driver, self.query.candidates)
            return
        if driver is None:
            yield from self._whole_level(by_seq=self.level == Level.INSTANCE)
            return
        candidates = self._candidates(driver)
        if self.level != Level.INSTANCE:  # patients, studies, series by ID; instances in insertion order
            for rid in sorted(candidates):
                record = self.record(rid)
                if record is not None:
                    yield rid, record
            return
        yield from self._in_insertion_order(candidates)

    def _in_insertion_order(self, candidates: set[RawId]) -> list[tuple[RawId, Resource]]:
        records = []
        for rid in candidates:
            self._spend(WORK_PER_CANDIDATE)
            record = self.record(rid)
            if record is not None:
                records.append((record.seq, rid, record))
        records.sort(key=lambda item: item[0])
        return [(rid, record) for _, rid, record in records]

    def _first_candidates(self, driver: _Driver | None, count: int) -> list[tuple[RawId, Resource]]:
        """The first ``count`` resources passing the database phase in insertion order, in answer order."""
        pool = (
            self._whole_level(by_seq=True)
            if driver is None
            else self._in_insertion_order(self._candidates(driver))
        )
        kept = []
        for rid, record in pool:
            self._spend(WORK_PER_CANDIDATE)
            if all(self._passes_database(record, placed) for placed in self.plan.database):
                kept.append((rid, record))
                if len(kept) >= count:
                    self.complete = False
                    break
        if self.level != Level.INSTANCE:
            kept.sort(key=lambda item: item[0])
        return kept

    def _whole_level(self, *, by_seq: bool) -> Iterator[tuple[RawId, Resource]]:
        """Every resource of the level, in insertion order or by ID."""
        level = self.level
        cursor = self.view.txn.cursor(db=self.view.dbs["levels" if by_seq else "find_ids"])
        if not cursor.set_range(bytes([level])):
            return
        for key, value in cursor:
            if key[0] != level:
                return
            rid = value if by_seq else key[1:]
            self._spend(WORK_PER_KEY)
            record = self.record(rid)
            if record is not None:
                yield rid, record

    def _fan_out(self, level: Level) -> float:
        """Average number of query-level resources below one resource of ``level``."""
        if level >= self.level:
            return 1.0
        return self.view.count(self.level) / max(1, self.view.count(level))

    def _indexed(self) -> Iterator[tuple[Level, int, Constraint]]:
        for placed in self.plan.database:
            assert placed.level is not None
            yield placed.level, placed.constraint.tag, placed.constraint

    def _choose_driver(self) -> _Driver | None:
        """The indexed constraint giving the fewest candidates; ``None``: scanning the level is cheaper."""
        resources = float(self.view.count(self.level))
        if resources == 0:
            return None  # an empty level (an empty server): nothing to scan, nothing to estimate against
        indexed = list(self._indexed())
        if len(indexed) == 1:
            level, tag, constraint = indexed[0]
            if constraint.kind in (Kind.EQUAL, Kind.LIST) and level <= self.level:
                # Its keys name at most every resource of the level: always chosen, no need to count.
                return _Driver(level, tag, constraint.value_ranges(), 0.0)
        best: _Driver | None = None
        best_estimate = resources
        indexed.sort(key=lambda item: item[2].kind not in (Kind.EQUAL, Kind.LIST))
        for level, tag, constraint in indexed:
            ranges = constraint.value_ranges()
            fan_out = self._fan_out(level)
            count = self._count(level, tag, ranges, best_estimate / fan_out)
            estimate = count * fan_out
            if estimate < best_estimate or (best is None and estimate <= best_estimate):
                best, best_estimate = _Driver(level, tag, ranges, estimate), estimate
        return best

    def _count(self, level: Level, tag: int, ranges: list[ValueRange], budget: float) -> int:
        """Index entries within ``ranges``; counting stops once above ``budget``."""
        cursor = self._values
        header = _index_key(level, tag, b"")
        total = 0
        for low, high in ranges:
            self._spend(WORK_PER_KEY)
            if low == high:
                total += cursor.count() if cursor.set_key(header + low) else 0
                continue
            end = header + high
            if not cursor.set_range(header + low):
                continue
            for key in cursor.iternext_nodup(keys=True, values=False):
                if key > end or total > budget:
                    break
                total += cursor.count()
                self._spend(WORK_PER_KEY)
        return total

    def _scan(self, driver: _Driver) -> Iterator[RawId]:
        """The IDs the driver's key ranges name (keys of other tags sort above ``header + high``)."""
        cursor = self._values
        header = _index_key(driver.level, driver.tag, b"")
        for low, high in driver.ranges:
            end = header + high
            if not cursor.set_range(header + low):
                continue
            for key, rid in cursor.iternext():
                if key > end:
                    break
                self._spend(WORK_PER_KEY)
                yield rid

    def _candidates(self, driver: _Driver) -> set[RawId]:
        """Query-level IDs below what the driver's keys name."""
        found = set(self._scan(driver))
        if driver.level == self.level:
            return found
        candidates: set[RawId] = set()
        for rid in found:
            below = self.view.descendants(rid, driver.level, self.level)
            self._spend(WORK_PER_KEY * len(below))
            candidates.update(below)
        return candidates

    # --- checks

    def _accepts(self, rid: RawId, record: Resource) -> bool:
        self._spend(WORK_PER_CANDIDATE)
        reads_instances = self.plan.reads_instances
        for placed in self.plan.database:
            value = self._value(record, placed)
            if value is None or not placed.constraint.database_matches(value):
                return False
            if not reads_instances and not placed.constraint.matches(value):
                return False
        if not reads_instances:
            return True
        first = self._first_instance(rid, self.level)
        return first is not None and self._instance_matches(first)

    def _value(self, record: Resource, placed: _Placed) -> str | None:
        """The value of a main tag of the query level or above, for the resource (``None``: absent)."""
        assert placed.level is not None
        holder = self._ancestor(record, placed.level)
        return holder.main_tags.get(placed.keyword) if holder is not None else None

    def _passes_database(self, record: Resource, placed: _Placed) -> bool:
        value = self._value(record, placed)
        return value is not None and placed.constraint.database_matches(value)

    def _first_instance(self, rid: RawId, level: Level) -> RawId | None:
        """The instance below ``rid`` that was stored first (Orthanc reads that one's tags)."""
        first = self._first_child(rid, level)
        return first[1] if first is not None else None

    def _first_child(self, rid: RawId, level: Level) -> tuple[bytes, RawId] | None:
        """(sequence number, ID) of the first instance below ``rid``."""
        if level == Level.INSTANCE:
            record = self.record(rid)
            return (b"", rid) if record is not None else None
        cursor = self.view.txn.cursor(db=self.view.dbs["children"])
        if not cursor.set_key(rid):
            return None
        if level == Level.SERIES:
            value = cursor.value()
            return value[:SEQ_SIZE], value[SEQ_SIZE : SEQ_SIZE + ID_SIZE]
        firsts = [self._first_child(value[SEQ_SIZE:], Level(level + 1)) for value in cursor.iternext_dup()]
        present = [first for first in firsts if first is not None]
        return min(present) if present else None

    def _instance_matches(self, instance: RawId) -> bool:
        self._spend(WORK_PER_INSTANCE_TAGS)
        tags = instance_strings(self.view, instance)
        for placed in (*self.plan.database, *self.plan.lower, *self.plan.other):
            value = tags.get(tag_key(placed.constraint.tag))
            if value is None or not placed.constraint.matches(value):
                return False
        return True


def lookup_identifier(view: IndexView, text: str) -> list[tuple[Level, RawId]]:
    """Resources whose identifier (PatientID, Study/Series/SOPInstanceUID) equals ``text`` in Orthanc's
    normalized form (:func:`identifier_key`: ``find p3`` finds ``FIND_P3``), by level then ID."""
    return [
        (level, rid)
        for level in Level
        for rid in resources_with_identifier(view, level, LEVEL_IDENTIFIERS[level], text)
    ]


def resources_with_identifier(view: IndexView, level: Level, tag: int, text: str) -> list[RawId]:
    """Orthanc's exact identifier lookup (/tools/lookup, C-MOVE, C-GET): the resources of ``level``
    whose ``tag``, one of :data:`IDENTIFIER_TAGS` kept at that level, has ``text``'s normalized form."""
    cursor = view.txn.cursor(db=view.dbs["find_values"])
    wanted = identifier_key(text)
    if not cursor.set_key(_index_key(level, tag, wanted[:MAX_VALUE_KEY])):
        return []
    keyword = MAIN_TAG_LEVELS[tag][1]
    return [
        rid
        for rid in sorted(cursor.iternext_dup())
        if len(wanted) < MAX_VALUE_KEY or _full_identifier_key(view, rid, keyword) == wanted  # keys are cut
    ]


def _full_identifier_key(view: IndexView, rid: RawId, keyword: str) -> bytes | None:
    record = view.resource(rid)
    return identifier_key(record.main_tags.get(keyword, "")) if record is not None else None


TagsJson = dict[str, dict[str, object]]
"""Tags in Orthanc's full JSON: ``"gggg,eeee"`` → ``{"Name", "Type", "Value"}``."""


def instance_tags(view: IndexView, instance: RawId, *, with_header: bool = False) -> TagsJson:
    """An instance's tags, and ``with_header``, its file meta group (C-FIND answers give
    MediaStorageSOPInstanceUID, as Orthanc's do)."""
    stored = view.stored_tags(instance)
    if stored is None:
        return {}
    full = _FULL_TAGS_DECODER.decode(zlib.decompress(stored.full))
    if with_header:
        full = {**_FULL_TAGS_DECODER.decode(stored.header), **full}
    return full


def instance_strings(view: IndexView, instance: RawId) -> dict[str, str]:
    """The string values of an instance's top-level tags (``"gggg,eeee"`` → text), from the stored JSON.

    Binary, too long and sequence values are left out: they match nothing.
    """
    full = instance_tags(view, instance)
    return {key: entry["Value"] for key, entry in full.items() if entry.get("Type") == "String"}  # type: ignore[misc]
