"""Metadata of resources (/{level}/{id}/metadata): system entries, user entries, revisions.

System entries (TransferSyntax, ReceptionDate, LastUpdate, ...) are written
by fastpacs and read-only through the API (403); user entries are named in
``UserMetadata`` or by their number (1024-65535). With ``CheckRevisions``,
changing or deleting an entry needs the ``If-Match`` of its current revision.
"""

from fastpacs.dicom.ids import Level, RawId
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.metadata import LAST_UPDATE, SYSTEM_METADATA, MetadataValue, is_user_metadata
from fastpacs.index.updates import MissingMetadataError, RevisionMismatchError, update_metadata
from fastpacs.index.writer import IndexWriter

_SYSTEM_NAMES = {kind: name for name, kind in SYSTEM_METADATA.items()}


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
        """The metadata type of a name; Orthanc's "inexistent item" for a name nobody declared."""
        kind = SYSTEM_METADATA.get(name) or self.user_kinds.get(name)
        if kind is None and name.isdigit() and is_user_metadata(int(name)):
            kind = int(name)
        if kind is None:
            raise OrthancError(ErrorCode.INEXISTENT_ITEM)
        return kind

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

    def get(self, level: Level, rid: RawId, name: str) -> MetadataValue | None:
        """One entry; ``None`` if there is no such resource, an empty 404 if the entry is not set."""
        kind = self.kind_of(name)
        entries = self.entries(level, rid)
        if entries is None:
            return None
        entry = entries.get(self.name_of(kind))
        if entry is None:
            raise BareHttpError(404)
        return entry

    async def set(
        self, level: Level, rid: RawId, name: str, value: str | None, if_match: str | None
    ) -> int | None:
        """Write (or delete, with ``value`` None) a user entry; return its new revision.

        ``KeyError`` if the resource does not exist.
        """
        kind = self.kind_of(name)
        if not is_user_metadata(kind):
            raise BareHttpError(403)
        expected = _revision(if_match)
        if self.check_revisions and expected is None and (value is None or self._exists(rid, kind)):
            raise OrthancError(
                ErrorCode.REVISION, "The If-Match header is required when CheckRevisions is on"
            )
        try:
            return await self.writer.run(
                lambda update: update_metadata(update, level, rid, kind, value, expected_revision=expected)
            )
        except RevisionMismatchError as error:
            raise OrthancError(ErrorCode.REVISION, "The revision does not match If-Match") from error
        except MissingMetadataError:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE) from None

    def _exists(self, rid: RawId, kind: int) -> bool:
        with self.database.read() as view:
            return view.metadata_value(rid, kind) is not None


def _revision(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    text = if_match.strip().strip('"')
    if not text.isdigit():
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Bad If-Match header: {if_match}")
    return int(text)
