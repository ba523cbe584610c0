"""Metadata of resources (/{level}/{id}/metadata): system entries, user entries, revisions.

System entries (TransferSyntax, ReceptionDate, LastUpdate, ...) are written
by fastpacs and read-only through the API (403); user entries are named in
``UserMetadata`` or by their number (1024-65535). Any other number names an
entry nobody can write, as in Orthanc.

Revisions are those of Orthanc 1.10.1 on its default index (SQLite), which
stores none: every entry is at revision 0 and its ETag is ``0-{MD5 of the
value}``; an ``If-Match`` matches when it names that revision and that MD5,
so the MD5 is what detects a concurrent writer. The answer to a change of an
existing entry names revision 1, the revision Orthanc computes and does not
keep. ``If-Match`` is checked whenever it is given; with ``CheckRevisions``
it is also required to change an existing entry or to delete one.
"""

import hashlib
import re
import time
from dataclasses import dataclass

from fastpacs.dicom.ids import Level, RawId
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.metadata import LAST_UPDATE, SYSTEM_METADATA, MetadataValue, is_user_metadata
from fastpacs.index.updates import IndexUpdate
from fastpacs.index.writer import IndexWriter

_SYSTEM_NAMES = {kind: name for name, kind in SYSTEM_METADATA.items()}
_NUMBER = re.compile(r"-?[0-9]+")
_REVISION = re.compile(r"\+?[0-9]+")
_INT32 = range(-(2**31), 2**31)
STORED_REVISION = 0
"""The revision of every stored entry: Orthanc's SQLite index keeps no revisions."""


@dataclass(frozen=True)
class ETag:
    """Orthanc's entity tag of a metadata entry: a revision and the MD5 of the value (hex)."""

    revision: int
    md5: str

    @classmethod
    def of(cls, value: str, revision: int = STORED_REVISION) -> "ETag":
        return cls(revision, hashlib.md5(value.encode(), usedforsecurity=False).hexdigest())

    @classmethod
    def parse(cls, header: str | None, header_name: str) -> "ETag | None":
        """The ETag a request names in ``If-Match`` or ``If-None-Match`` (quotes optional), if any.

        Orthanc's 400 "Parameter out of range" when the text is not a revision, a
        dash and a hash; the hash itself is not checked (a wrong one does not match).
        """
        if header is None:
            return None
        text = header[1:-1] if len(header) >= 2 and header[0] == header[-1] == '"' else header
        revision, dash, md5 = text.partition("-")
        if not (dash and _REVISION.fullmatch(revision) and int(revision) < 2**63):
            raise OrthancError(
                ErrorCode.PARAMETER_OUT_OF_RANGE,
                f'The "{header_name}" HTTP header should contain the ETag (revision followed by MD5 hash), '
                f"but found: {text}",
            )
        return cls(int(revision), md5)

    def __str__(self) -> str:
        return f"{self.revision}-{self.md5}"


@dataclass(frozen=True)
class Entry:
    """One metadata entry as the API shows it."""

    value: str
    etag: ETag


class MetadataService:
    def __init__(
        self, database: Database, writer: IndexWriter, user_metadata: dict[str, int], check_revisions: bool
    ):
        self.database = database
        self.writer = writer
        self.user_kinds = {name: kind for name, kind in user_metadata.items() if is_user_metadata(kind)}
        self.user_names = {kind: name for name, kind in self.user_kinds.items()}
        self.check_revisions = check_revisions

    def kind_of(self, name: str) -> int:
        """The metadata type a name stands for: a system name, a ``UserMetadata`` name or a number.

        As Orthanc: any 32-bit number names a type (only 1024-65535 can be
        written); a number with spaces around or beyond 32 bits is 400 "Bad type
        for a parameter"; anything else is 404 "Accessing an inexistent item".
        """
        kind = SYSTEM_METADATA.get(name) or self.user_kinds.get(name)
        if kind is not None:
            return kind
        if not _NUMBER.fullmatch(name.strip()):
            raise OrthancError(ErrorCode.INEXISTENT_ITEM)
        if name != name.strip() or int(name) not in _INT32:
            raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, "Syntax error in some user-supplied data")
        return int(name)

    def name_of(self, kind: int) -> str:
        return _SYSTEM_NAMES.get(kind) or self.user_names.get(kind) or str(kind)

    def entries(self, level: Level, rid: RawId) -> dict[str, MetadataValue] | None:
        """Every entry of a resource in Orthanc's order; ``None`` if there is no such resource."""
        with self.database.read() as view:
            if view.resource_at(rid, level) is None:
                return None
            stored = view.metadata(rid)
            if level != Level.INSTANCE:
                stored[LAST_UPDATE] = MetadataValue(view.last_update(rid))
        return {self.name_of(kind): stored[kind] for kind in sorted(stored)}

    def get(self, level: Level, rid: RawId | None, name: str) -> Entry:
        """One entry; Orthanc's 404s for an unknown name, an unknown resource (``rid`` None: unparsable ID)
        and (empty) an entry that is not set."""
        kind = self.kind_of(name)
        entries = None if rid is None else self.entries(level, rid)
        if entries is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        entry = entries.get(self.name_of(kind))
        if entry is None:
            raise BareHttpError(404)
        return Entry(entry.value, ETag.of(entry.value))

    async def put(self, level: Level, rid: RawId | None, name: str, value: str, if_match: str | None) -> ETag:
        """Write a user entry; return the ETag Orthanc answers (revision 1 when it replaced one)."""
        kind = self._writable_kind(name)
        expected = ETag.parse(if_match, "if-match")
        if rid is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        return await self.writer.run(
            lambda update: _put(
                update, level, rid, kind, value, expected=expected, check_revisions=self.check_revisions
            )
        )

    async def delete(self, level: Level, rid: RawId | None, name: str, if_match: str | None) -> None:
        """Remove a user entry (404 "Unknown resource" if it is not set)."""
        kind = self._writable_kind(name)
        expected = ETag.parse(if_match, "if-match")
        if self.check_revisions and expected is None:
            raise OrthancError(
                ErrorCode.REVISION, 'HTTP header "If-Match" is missing, as "CheckRevisions" is "true"'
            )
        if rid is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        await self.writer.run(lambda update: _delete(update, level, rid, kind, expected))

    def _writable_kind(self, name: str) -> int:
        kind = self.kind_of(name)
        if not is_user_metadata(kind):
            raise BareHttpError(403)
        return kind


def _put(
    update: IndexUpdate,
    level: Level,
    rid: RawId,
    kind: int,
    value: str,
    *,
    expected: ETag | None,
    check_revisions: bool,
) -> ETag:
    """Set one entry and log ``UpdatedMetadata`` (the transaction of :meth:`MetadataService.put`)."""
    if update.resource_at(rid, level) is None:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
    current = update.metadata_value(rid, kind)
    revision = STORED_REVISION
    if current is not None:
        if (expected is not None or check_revisions) and expected != ETag.of(current.value):
            raise OrthancError(ErrorCode.REVISION)
        revision += 1
    update.put_metadata(rid, kind, value)
    update.log_change("UpdatedMetadata", level, rid, time.time())
    return ETag.of(value, revision)


def _delete(update: IndexUpdate, level: Level, rid: RawId, kind: int, expected: ETag | None) -> None:
    """Remove one entry and log ``UpdatedMetadata`` (the transaction of :meth:`MetadataService.delete`)."""
    current = None if update.resource_at(rid, level) is None else update.metadata_value(rid, kind)
    if current is None:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
    if expected is not None and expected != ETag.of(current.value):
        raise OrthancError(ErrorCode.REVISION)
    update.delete_metadata(rid, kind)
    update.log_change("UpdatedMetadata", level, rid, time.time())
