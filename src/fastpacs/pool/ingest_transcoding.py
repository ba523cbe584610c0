"""Ingest transcoding (Orthanc's ``IngestTranscoding``), in the worker processes.

Every new instance whose transfer syntax is not the configured one is
converted to it before it is indexed: a stored file is read back by a worker,
transcoded with :func:`fastpacs.dicom.transcoding.transcode`, summarized and
stored again, and the server indexes the new file instead (see
:meth:`fastpacs.services.ingest.IngestService.ingest`). As in Orthanc 1.10.1:

- only files with an uncompressed source syntax (Implicit/Explicit Little
  Endian, Explicit Big Endian) or with any other, per
  ``IngestTranscodingOfUncompressed`` and ``IngestTranscodingOfCompressed``;
- a file that cannot be converted (pixels the target cannot hold, such as
  32-bit cells or 16-bit samples in JPEG baseline, pixel data that cannot be
  decoded) is stored as it was received, with no error;
- JPEG baseline makes a new lossy image with a new SOP Instance UID, hence a
  new instance (each upload of the same file makes another one);
- a file without pixel data only has its transfer syntax changed.
"""

import logging

import msgspec

from fastpacs.dicom.jpeg_baseline import JPEG_BASELINE
from fastpacs.dicom.jpeg_baseline import QUALITY as JPEG_QUALITY
from fastpacs.dicom.parse import (
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    InstanceSummary,
    summarize,
)
from fastpacs.dicom.transcoding import transcode
from fastpacs.errors import OrthancError
from fastpacs.pool.tasks import ParsedFile, read_blob, store_parsed
from fastpacs.storage.blobs import StoredBlob

logger = logging.getLogger(__name__)

UNCOMPRESSED_TRANSFER_SYNTAXES = frozenset(
    {IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN}
)
"""What Orthanc's ``IngestTranscodingOfUncompressed`` covers; every other syntax (deflated too) counts
as compressed."""


class IngestTranscoding(msgspec.Struct, frozen=True):
    """The transfer syntax new instances are stored in, and which of them are converted."""

    transfer_syntax: str
    of_uncompressed: bool = True
    of_compressed: bool = True
    quality: int = JPEG_QUALITY
    """``DicomLossyTranscodingQuality``: the IJG quality of JPEG baseline."""

    def applies_to(self, transfer_syntax: str) -> bool:
        """Whether a file received in ``transfer_syntax`` is to be converted."""
        if transfer_syntax == self.transfer_syntax:
            return False
        if transfer_syntax in UNCOMPRESSED_TRANSFER_SYNTAXES:
            return self.of_uncompressed
        return self.of_compressed

    @property
    def lossy(self) -> bool:
        """Whether the target makes new lossy images (JPEG baseline: the lossy syntax fastpacs writes)."""
        return self.transfer_syntax == JPEG_BASELINE


def transcode_stored(
    blob: StoredBlob, transcoding: IngestTranscoding, default_encoding: str
) -> ParsedFile | None:
    """The stored file ``blob`` converted, summarized and stored as a new blob (not yet flushed);
    ``None`` when it cannot be converted, to be indexed as it was received.

    ``FileNotFoundError`` if a concurrent delete of the same bytes removed the blob meanwhile.
    """
    data = read_blob(blob)
    try:
        converted = transcode(
            data,
            transcoding.transfer_syntax,
            lossy=transcoding.lossy,
            new_instance_uid=transcoding.lossy,
            quality=transcoding.quality,
        )
        summary: InstanceSummary = summarize(converted, default_encoding)
    except OrthancError as error:
        logger.info(
            "ingest transcoding to %s is not possible for this file, stored as received: %s",
            transcoding.transfer_syntax,
            error,
        )
        return None
    return store_parsed(converted, summary, [])
