"""Modification and anonymization in the worker processes.

The server process sends the :class:`Modification` and the blobs of the
stored files; each worker reads the files from the shared storage itself,
and for the jobs stores the new files itself too and hands back only their
summaries and blobs (:class:`ParsedFile`), which the server indexes
(:meth:`fastpacs.services.ingest.IngestService.ingest_stored`): the new
bytes never cross the process boundary. The instance-level operations get
the new file's bytes in the answer.
"""

import msgspec

from fastpacs.dicom.ids import Level
from fastpacs.dicom.modification import SOP_INSTANCE_UID, Modification, ModifiedFile, modify
from fastpacs.dicom.parse import (
    InstanceSummary,
    header_prefix,
    summarize,
    summarize_dataset,
    summarize_header,
)
from fastpacs.dicom.transcoding import transcode
from fastpacs.pool.tasks import ParsedFile, read_blob, read_uncompressed_blob, store_parsed
from fastpacs.storage.blobs import StoredBlob


class TranscodeTarget(msgspec.Struct, frozen=True):
    """A modification's ``Transcode``: the transfer syntax, and the IJG quality JPEG baseline is
    written with (``DicomLossyTranscodingQuality``)."""

    transfer_syntax: str
    quality: int


def modify_and_store(
    modification: Modification,
    blobs: list[StoredBlob | bytes],
    default_encoding: str,
    target: TranscodeTarget | None,
) -> list[ParsedFile | None]:
    """The modified files, in order, transcoded to ``target`` when given, each summarized
    and stored; ``None`` for a file deleted since the request was accepted.

    Every file is modified and summarized before any is stored: a file that
    fails leaves no blob behind. A store that fails after others raises
    :class:`~fastpacs.pool.tasks.StoreInterruptedError`, which names the blobs already written.
    """
    modified: list[tuple[bytes, InstanceSummary] | None] = []
    for blob in blobs:
        try:
            data = read_blob(blob) if isinstance(blob, StoredBlob) else read_uncompressed_blob(blob)
        except FileNotFoundError:
            modified.append(None)
            continue
        new = modify_file(modification, data, default_encoding, target)
        modified.append((new.data, _summarize(new, default_encoding)))
    stored: list[ParsedFile] = []
    return [None if item is None else store_parsed(item[0], item[1], stored) for item in modified]


def _summarize(modified: ModifiedFile, default_encoding: str) -> InstanceSummary:
    """The summary of a file just written: from the dataset its writing says a reading gives, else
    from its header when that suffices (as the ingest does), else from the whole file."""
    data = modified.data
    if modified.read_back is not None:
        return summarize_dataset(modified.read_back, len(data), default_encoding)
    prefix = header_prefix(data)
    summary = None if prefix is None else summarize_header(prefix, len(data), default_encoding)
    return summarize(data, default_encoding) if summary is None else summary


def modify_file(
    modification: Modification,
    data: bytes,
    default_encoding: str,
    target: TranscodeTarget | None,
    *,
    read_back: bool = True,
) -> ModifiedFile:
    """One modified file, transcoded to ``target`` when given; with the dataset a reading of it gives
    when ``read_back`` (and it is not transcoded), for its summary."""
    modified = modify(modification, data, default_encoding, read_back=read_back and target is None)
    if target is None:
        return modified
    # As in Orthanc, a lossy image made by the modification of a series, study or patient keeps the SOP
    # Instance UID the modification gave it; one of a single instance, or whose UID is kept, gets a new one.
    new_uid = modification.level == Level.INSTANCE or SOP_INSTANCE_UID in modification.kept_identifiers
    transcoded = transcode(
        modified.data, target.transfer_syntax, lossy=True, new_instance_uid=new_uid, quality=target.quality
    )
    return ModifiedFile(transcoded, None)


def modify_stored_file(
    modification: Modification, blob: StoredBlob, default_encoding: str, target: TranscodeTarget | None
) -> bytes:
    """The modified file of one stored instance (the instance-level /modify and /anonymize: its
    answer, or an ingest that summarizes it)."""
    return modify_file(modification, read_blob(blob), default_encoding, target, read_back=False).data
