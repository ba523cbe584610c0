"""Worker-side reads of stored files for the content views (/content, /pdf, re-rendered tags)."""

from fastpacs.dicom.content import ContentAnswer, encapsulated_document, navigate
from fastpacs.dicom.parse import StoredTags, file_meta_tags, read_dataset, store_tags, tag_walker
from fastpacs.dicom.tags import SPECIFIC_CHARACTER_SET
from fastpacs.pool.tasks import read_blob
from fastpacs.storage.blobs import StoredBlob


def content_at(blob: StoredBlob, path: list[str]) -> ContentAnswer:
    return navigate(read_blob(blob), path)


def pdf_of(blob: StoredBlob) -> bytes:
    return encapsulated_document(read_blob(blob))


def tags_of(blob: StoredBlob, default_encoding: str, ignore_length: frozenset[int]) -> StoredTags:
    """The tag JSON of a stored file, decoded again (another DefaultEncoding, or ``ignore-length``)."""
    dataset = read_dataset(read_blob(blob))
    walker = tag_walker(dataset, default_encoding)
    walker.ignore_length = ignore_length
    full = walker.full(dataset)
    header = file_meta_tags(walker, getattr(dataset, "file_meta", None))
    return store_tags(walker, full, header, SPECIFIC_CHARACTER_SET in dataset, default_encoding)
