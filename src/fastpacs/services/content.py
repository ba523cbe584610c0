"""The content views of an instance: /tags in its three forms, /header, /content paths, /pdf.

Tags and header come from the JSON stored at ingest, so a request reads
neither file nor parser. Files are read (in the worker pool) only for raw
values under /content, the embedded PDF, ``?ignore-length``, and files
whose strings depend on a DefaultEncoding that changed since ingest, or
whose names and VRs on a user dictionary (``Dictionary``,
``LoadPrivateDictionary``) that changed since (:attr:`StoredTags.dictionary`):
those are read as Orthanc reads every file, at each request.
"""

from collections import OrderedDict
from enum import StrEnum

import msgspec
from isal import isal_zlib

from fastpacs.dicom.content import ContentAnswer
from fastpacs.dicom.ids import Level, RawId
from fastpacs.dicom.parse import StoredTags
from fastpacs.dicom.tags import shorten, simplify
from fastpacs.index.database import Database
from fastpacs.index.metadata import SYSTEM_METADATA
from fastpacs.pool import content as content_tasks
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.storage.blobs import StoredBlob

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
_encoder = msgspec.json.Encoder(order="sorted")
_inflate = isal_zlib.decompress
"""The stored forms are zlib data; ISA-L inflates them 10-20 % faster than zlib (same bytes)."""
INFLATED_BUDGET = 8 << 20
"""Bytes of tag JSON (and of its compressed form) kept inflated, for the reads that come again."""


class TagForm(StrEnum):
    FULL = "full"
    SIMPLIFIED = "simplified"
    SHORT = "short"


class InflatedForms:
    """The tag JSON inflated last, by instance and form, within a budget of bytes (least recently used
    out first).

    Inflating a stored form costs ~3-4 µs for a few hundred bytes (the Huffman tables of the
    stream are built first) and ~6 µs and more for a full form: as much as the rest of the
    answer. An entry holds the compressed bytes it was inflated from and is used only for
    those same bytes, so an instance stored again with other tags, or tags decoded again for
    another DefaultEncoding, can never be answered from it. Used on the event loop only.
    """

    def __init__(self, budget: int = INFLATED_BUDGET):
        self.budget = budget
        self._entries: OrderedDict[tuple[RawId, TagForm], tuple[bytes, bytes]] = OrderedDict()
        self._size = 0

    def inflate(self, rid: RawId, form: TagForm, compressed: bytes) -> bytes:
        key = (rid, form)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == compressed:
            self._entries.move_to_end(key)
            return entry[1]
        text = _inflate(compressed)
        if entry is not None:
            self._size -= len(entry[0]) + len(entry[1])
        self._entries[key] = (compressed, text)
        self._entries.move_to_end(key)
        self._size += len(compressed) + len(text)
        while self._size > self.budget:
            _, (old_compressed, old_text) = self._entries.popitem(last=False)
            self._size -= len(old_compressed) + len(old_text)
        return text


class ContentService:
    def __init__(self, database: Database, pool: WorkerPool, default_encoding: DefaultEncoding):
        self.database = database
        self.pool = pool
        self.default_encoding = default_encoding
        self._inflated = InflatedForms()

    def _stored(self, rid: RawId) -> tuple[StoredTags, StoredBlob] | None:
        with self.database.read() as view:
            record = view.resource_at(rid, Level.INSTANCE)
            if record is None or record.blob is None:
                return None
            tags = view.stored_tags(rid)
        return (tags, record.blob) if tags is not None else None

    def stored_tags_json(self, rid: RawId, form: TagForm) -> bytes | None:
        """The tag JSON as stored at ingest, when it is the answer (``None``: ask :meth:`tags`).

        It is not when the instance does not exist, or when its strings depend on a
        DefaultEncoding or a user dictionary that changed since ingest. Only the tags record
        is read: the index holds one for every instance and for nothing else (written and
        removed with the instance, in the same transaction).
        """
        with self.database.read() as view:
            tags = view.stored_tags(rid)
        if tags is None or not tags.is_current(self.default_encoding.name):
            return None
        return self._inflated.inflate(rid, form, _form_of(tags, form))

    async def _current_tags(self, rid: RawId, ignore_length: frozenset[int]) -> StoredTags | None:
        stored = self._stored(rid)
        if stored is None:
            return None
        tags, blob = stored
        encoding = self.default_encoding.name
        if ignore_length or not tags.is_current(encoding):
            return await self.pool.run(content_tasks.tags_of, blob, encoding, ignore_length)
        return tags

    async def tags(
        self, rid: RawId, form: TagForm, ignore_length: frozenset[int] = frozenset()
    ) -> bytes | None:
        """The tag JSON of an instance (bytes ready to send), ``None`` if there is no such instance."""
        tags = await self._current_tags(rid, ignore_length)
        if tags is None:
            return None
        return self._inflated.inflate(rid, form, _form_of(tags, form))

    def header(self, rid: RawId, form: TagForm) -> bytes | None:
        """The file meta group (0002,xxxx) in the given form."""
        stored = self._stored(rid)
        if stored is None:
            return None
        header = stored[0].header
        if form == TagForm.FULL:
            return header
        full = msgspec.json.decode(header)
        return _encoder.encode(simplify(full) if form == TagForm.SIMPLIFIED else shorten(full))

    async def content(self, rid: RawId, path: list[str]) -> ContentAnswer | None:
        stored = self._stored(rid)
        if stored is None:
            return None
        return await self.pool.run(content_tasks.content_at, stored[1], path)

    async def pdf(self, rid: RawId) -> bytes | None:
        """The embedded PDF of an Encapsulated PDF instance; ``None`` for any other instance."""
        with self.database.read() as view:
            record = view.resource_at(rid, Level.INSTANCE)
            if record is None or record.blob is None:
                return None
            sop_class = view.metadata_value(rid, SYSTEM_METADATA["SopClassUid"])
            is_pdf = sop_class is not None and sop_class.value == ENCAPSULATED_PDF
            blob = record.blob
        if not is_pdf:
            return None
        return await self.pool.run(content_tasks.pdf_of, blob)


def _form_of(tags: StoredTags, form: TagForm) -> bytes:
    """The compressed JSON of one form."""
    if form == TagForm.SIMPLIFIED:
        return tags.simplified
    return tags.short if form == TagForm.SHORT else tags.full
