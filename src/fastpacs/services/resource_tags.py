"""Tags of a resource's instances: /module, /module-patient, /shared-tags, /instances-tags.

Everything is answered from the tag JSON stored at ingest (see
:class:`fastpacs.dicom.parse.StoredTags`), never by reading files: the
compressed forms are gathered from the index in one snapshot, then
decompressed and combined away from the event loop (in a thread for plain
concatenation, in the worker pool when JSON must be parsed).
"""

import asyncio
import zlib

import msgspec

from fastpacs.dicom.ids import Level, RawId, format_id
from fastpacs.dicom.modules import module_tags
from fastpacs.dicom.parse import StoredTags, compress_tags
from fastpacs.dicom.tags import TagJson, shorten, simplify
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.content import ContentService, TagForm
from fastpacs.services.encoding import DefaultEncoding

_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder()


def _in_form(full: TagJson, form: TagForm) -> bytes:
    if form == TagForm.SIMPLIFIED:
        return _encoder.encode(simplify(full))
    if form == TagForm.SHORT:
        return _encoder.encode(shorten(full))
    return _encoder.encode(full)


def shared_tags(full_forms: list[bytes], form: TagForm) -> bytes:
    """The top-level string values every instance has, with the same value (worker pool).

    As Orthanc, sequences and values without text (binary, too long) are never shared.
    """
    shared: TagJson | None = None
    for compressed in full_forms:
        full = _decoder.decode(zlib.decompress(compressed))
        if shared is None:
            shared = {key: entry for key, entry in full.items() if entry["Type"] == "String"}
        else:
            shared = {key: entry for key, entry in shared.items() if full.get(key) == entry}
    return _in_form(shared or {}, form)


def module_of(full_form: bytes, level: Level, form: TagForm) -> bytes:
    """The module of ``level`` in one instance's tags (worker pool)."""
    return _in_form(module_tags(_decoder.decode(full_form), level), form)


def _joined(parts: list[tuple[str, bytes]]) -> bytes:
    """``{"id": {...}, ...}`` from JSON documents already encoded, in ID order."""
    body = b",".join(b'"%s":%s' % (key.encode(), zlib.decompress(value)) for key, value in sorted(parts))
    return b"{" + body + b"}"


class ResourceTagsService:
    def __init__(
        self, database: Database, pool: WorkerPool, default_encoding: DefaultEncoding, content: ContentService
    ):
        self.database = database
        self.pool = pool
        self.default_encoding = default_encoding
        self.content = content

    def _instances(self, level: Level, rid: RawId) -> list[tuple[RawId, StoredTags | None]]:
        """The instances below a resource with their stored tags; Orthanc's 404 if it does not exist."""
        with self.database.read() as view:
            if view.resource_at(rid, level) is None:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
            return [
                (child, view.stored_tags(child)) for child in view.descendants(rid, level, Level.INSTANCE)
            ]

    def _is_current(self, tags: StoredTags | None) -> bool:
        """False when the tags were read with another DefaultEncoding or user dictionary than today's."""
        return tags is not None and tags.is_current(self.default_encoding.name)

    async def _compressed(self, instance: RawId, tags: StoredTags | None, form: TagForm) -> bytes:
        """One instance's tags in ``form``, zlib-compressed as stored."""
        if self._is_current(tags):
            assert tags is not None
            return {TagForm.FULL: tags.full, TagForm.SIMPLIFIED: tags.simplified, TagForm.SHORT: tags.short}[
                form
            ]
        body = await self.content.tags(instance, form)
        if body is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        return compress_tags(body)

    async def instances_tags(self, level: Level, rid: RawId, form: TagForm) -> bytes:
        """``{instance ID: tags}`` of every instance below the resource."""
        parts = [
            (format_id(instance), await self._compressed(instance, tags, form))
            for instance, tags in self._instances(level, rid)
        ]
        return await asyncio.to_thread(_joined, parts)

    async def shared_tags(self, level: Level, rid: RawId, form: TagForm) -> bytes:
        full_forms = [
            await self._compressed(instance, tags, TagForm.FULL)
            for instance, tags in self._instances(level, rid)
        ]
        return await self.pool.run(shared_tags, full_forms, form)

    async def module(self, level: Level, rid: RawId, module: Level, form: TagForm) -> bytes:
        """The module of level ``module`` in the tags of the resource's first instance."""
        with self.database.read() as view:
            if view.resource_at(rid, level) is None:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
            instance = rid
            for _ in range(level, Level.INSTANCE):
                children = view.children(instance)
                if not children:
                    return b"{}"
                instance = children[0]
        full = await self.content.tags(instance, TagForm.FULL)
        if full is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        return await self.pool.run(module_of, full, module, form)
